import ArgumentParser
import FerryProtocol
import FerryService
import Foundation
import ZeroMQ

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask the broker (and optionally a relay or an agent) how things stand.")

    @Option(help: "The broker's control endpoint. Env: FERRY_BROKER_CONTROL_ENDPOINT.")
    var broker = Env.string("FERRY_BROKER_CONTROL_ENDPOINT", DefaultEndpoint.brokerControl)

    @Option(name: .customLong("relay"), help: "Also ask the relay at this endpoint; repeatable.")
    var relays: [String] = []

    @Option(name: .customLong("agent"), help: "Also ask the agent at this control endpoint; repeatable.")
    var agents: [String] = []

    @Flag(help: "Print the reports as JSON lines.")
    var json = false

    func run() throws {
        let context = try Context()
        var failed = false
        for endpoint in [broker] + relays + agents {
            do {
                let report = try StatusProbe.ask(endpoint, context: context)
                if json {
                    print(String(decoding: try JSONCoding.encoder.encode(report), as: UTF8.self))
                } else {
                    print("\(report.service) \(report.id) at \(endpoint), up since \(report.startedAt)")
                    for (key, value) in report.counters.sorted(by: { $0.key < $1.key }) { print("  \(key): \(value)") }
                }
            } catch {
                failed = true
                printError("ferry: \(endpoint): \(error)")
            }
        }
        if failed { throw ExitStatus.unreachable }
    }
}
