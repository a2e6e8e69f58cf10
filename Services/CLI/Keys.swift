import ArgumentParser
import FerryService
import FerryTrust
import Foundation
import ZeroMQ

/// Key pairs by hand: a device's (the agent makes them on first start otherwise), or a whole
/// fleet's transport keys.
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make key pairs: this device's (the default), or the fleet's transport keys.",
        subcommands: [Device.self, Fleet.self], defaultSubcommand: Device.self)

    struct Device: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make this device's key pairs if it has none, and print the public keys.")

        @Option(help: Settings.agentData.help("The agent's data directory."))
        var dataDir = Settings.agentData.value

        func run() throws {
            let keys = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: dataDir))
            print("signing (ed25519):    \(keys.signingPublicKey)")
            print("agreement (x25519):   \(keys.agreementPublicKey)")
            print("transport (curve):    \(Z85.encode(keys.transportKeyPair.publicKey))")
            print("kept in \(URL(fileURLWithPath: dataDir).appendingPathComponent(DeviceKeys.fileName).path) (mode 0600)")
        }
    }

    struct Fleet: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make the fleet's transport keys in DIR (only those missing): every service's CURVE key and the origin's signing key.")

        @Argument(help: "The directory; give services all of it, devices and relays only DIR/public. Default: FERRY_TRANSPORT_KEYS.")
        var directory: String = Settings.transportKeys.value

        @Option(name: .customLong("hand-out"), help: ArgumentHelp(
            "Also copy the keys out to OUT, one share per host: OUT/public (everyone's), and OUT/<role> for each service (and the operator) with only that one's secret files, to give it as its secret/.",
            valueName: "OUT"))
        var handOut: String?

        func validate() throws {
            guard !directory.isEmpty else { throw ValidationError("name the directory, or set FERRY_TRANSPORT_KEYS") }
        }

        func run() throws {
            let made = try FleetKeys.make(at: directory)
            let fleet = try FleetKeys(directory: directory)
            print(made.isEmpty ? "nothing to make: \(directory) has every key" : "made: \(made.joined(separator: ", "))")
            for role in FleetRole.allCases { print("\(role.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(Z85.encode(fleet.publicKeys[role]!))") }
            print("origin signing key (ed25519): \(fleet.originSigningKey)")
            if let handOut {
                try fleet.handOut(to: handOut)
                print("handed out to \(URL(fileURLWithPath: handOut).path): public/ for everyone, <role>/ as each service's secret/")
            } else {
                print("set FERRY_TRANSPORT_KEYS=\(URL(fileURLWithPath: directory).path) for every service, device and relay")
            }
        }
    }
}
