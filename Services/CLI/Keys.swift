import ArgumentParser
import FerryService
import FerryTrust
import Foundation

/// Makes a device's key pairs by hand (the agent makes them on first start otherwise) and
/// prints their public halves, for an operator who enrols devices from a list.
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make this device's key pairs if it has none, and print the public keys.")

    @Option(help: "The agent's data directory. Env: FERRY_AGENT_DATA.")
    var dataDir = Env.string("FERRY_AGENT_DATA", "./run/agent")

    func run() throws {
        let keys = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: dataDir))
        print("signing (ed25519):    \(keys.signingPublicKey)")
        print("agreement (x25519):   \(keys.agreementPublicKey)")
        print("kept in \(URL(fileURLWithPath: dataDir).appendingPathComponent(DeviceKeys.fileName).path) (mode 0600)")
    }
}
