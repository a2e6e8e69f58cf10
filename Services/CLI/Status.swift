import ArgumentParser
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import ZeroMQ

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "How Ferry is doing: every service's health, relays and their load, sessions, and what came from peers.")

    @Option(help: Topology.brokerControl.connectHelp("The broker's control endpoint."))
    var broker = Topology.brokerControl.connectEndpoint

    /// The origin's URL, and the operator token its statistics need.
    @OptionGroup var operatorOptions: OperatorOptions
    var origin: String { operatorOptions.origin }

    @Option(help: Topology.intakeStatus.connectHelp("Intake's status endpoint."))
    var intakeStatus = Topology.intakeStatus.connectEndpoint

    @Option(help: Topology.matcherStatus.connectHelp("The matcher's status endpoint."))
    var matcherStatus = Topology.matcherStatus.connectEndpoint

    @Option(help: Topology.reporterStatus.connectHelp("The reporter's status endpoint."))
    var reporterStatus = Topology.reporterStatus.connectEndpoint

    @Option(help: Topology.eventBusStatus.connectHelp("The event bus's status endpoint."))
    var eventbusStatus = Topology.eventBusStatus.connectEndpoint

    @Option(name: .customLong("relay"), help: "Also show this relay's own counters; repeatable.")
    var relays: [String] = []

    @Option(name: .customLong("agent"), help: "Also show this agent's counters; repeatable.")
    var agents: [String] = []

    @Flag(help: "Print every report as a JSON line instead.")
    var json = false

    @Option(help: Settings.transportKeys.help("The fleet's transport keys: with them the broker and relays are asked over CURVE, as the operator."))
    var transportKeys = Settings.transportKeys.value

    /// The broker's report, asked over CURVE as the operator when there are keys.
    func askBroker(_ context: Context, _ security: TransportSecurity, timeoutMilliseconds: Int = 3000) throws -> StatusReport {
        try StatusProbe.ask(connectable(broker), context: context, timeoutMilliseconds: timeoutMilliseconds, security: security,
                            serverKey: security.fleet?.publicKeys[.broker])
    }

    /// A relay's or an agent's own report: relays are CURVE servers with keys, agents' control
    /// sockets are local and plain.
    func askOwn(_ endpoint: String, _ context: Context, _ security: TransportSecurity, brokerReport: StatusReport?) throws -> StatusReport {
        guard relays.contains(endpoint) else { return try StatusProbe.ask(endpoint, context: context) }
        return try StatusProbe.ask(endpoint, context: context, security: security, serverKey: relayKey(endpoint, in: brokerReport))
    }

    /// A relay's key, as the broker knows it from the relay's own connection; for a relay on
    /// this host (a loopback endpoint, as in its container), the one in its data directory.
    func relayKey(_ endpoint: String, in report: StatusReport?) -> [UInt8]? {
        if case .array(let relays)? = report?.counters["relays"],
           let relay = relays.first(where: { $0["endpoint"] == .string(endpoint) }),
           case .string(let key)? = relay["key"], let bytes = Data(base64Encoded: key) {
            return Array(bytes)
        }
        let directory = URL(fileURLWithPath: Settings.relayData.value)
        guard isLocalOnly(endpoint), FileManager.default.fileExists(atPath: directory.appendingPathComponent(DeviceKeys.relayFileName).path),
              let keys = try? DeviceKeys.loadOrCreate(directory: directory, fileName: DeviceKeys.relayFileName) else { return nil }
        return keys.transportKeyPair.publicKey
    }

    func run() throws {
        let context = try Context()
        let security = try TransportSecurity.asOperator(keys: transportKeys)
        if json { return try printJSON(context, security: security) }

        var down: [String] = []
        print("services")
        let services = [("eventbus", eventbusStatus), ("reporter", reporterStatus), ("broker", broker), ("matcher", matcherStatus),
                         ("intake", intakeStatus)]
        var brokerReport: StatusReport?
        var matcherReport: StatusReport?
        for (name, endpoint) in services {
            do {
                let report = name == "broker" ? try askBroker(context, security, timeoutMilliseconds: 1500)
                    : try StatusProbe.ask(connectable(endpoint), context: context, timeoutMilliseconds: 1500)
                if name == "broker" { brokerReport = report }
                if name == "matcher" { matcherReport = report }
                print("  \(name.padding(toLength: 10, withPad: " ", startingAt: 0)) serving since \(report.startedAt)")
            } catch {
                down.append(name)
                print("  \(name.padding(toLength: 10, withPad: " ", startingAt: 0)) NOT SERVING (\(endpoint))")
            }
        }
        let answer = originStats()
        let stats = try? answer?.get()
        let originState = switch answer {
        case nil: "NOT SERVING (\(origin))"
        case .success: "serving at \(origin)"
        case .failure(let refusal): "serving at \(origin); its statistics refused: \(refusal)"
        }
        print("  \("origin".padding(toLength: 10, withPad: " ", startingAt: 0)) \(originState)")
        if answer == nil { down.append("origin") }

        if let brokerReport {
            let counters = brokerReport.counters
            print("devices connected: \(counters["agents"] ?? 0)   sessions active: \(counters["sessionsActive"] ?? 0)   brokered so far: \(counters["sessions.brokered"] ?? 0)")
            if case .array(let relays)? = counters["relays"] {
                print("relays (\(relays.count))")
                for relay in relays {
                    let draining = relay["draining"] == .bool(true) ? "  DRAINING" : ""
                    let forwards = relay["forwardsFor"]?.stringValue.map { "  forwards for \($0)" } ?? ""
                    print("  \(relay["id"] ?? "?")  \(relay["endpoint"] ?? "?")  sessions \(relay["sessions"] ?? 0)\(forwards)\(draining)")
                }
            }
        }
        if case .array(let swarms)? = matcherReport?.counters["swarms"], !swarms.isEmpty {
            // Who is getting what from whom right now: a crowd's chain, origin first.
            print("swarms (\(swarms.count))")
            for swarm in swarms {
                print("  \(swarm["contentId"]?.stringValue?.prefix(12) ?? "?")…  \(swarm["devices"] ?? 0) devices getting it")
                if case .array(let members)? = swarm["members"] {
                    for member in members {
                        let pace = member["perSecond"]?.numberValue.map { String(format: ", %.1f chunks/s", $0) } ?? ""
                        let moved = member["moved"] == .bool(true) ? ", moved to the tail for lagging" : ""
                        print("    \(member["deviceId"]?.stringValue ?? "?") from \(member["from"]?.stringValue ?? "?"), \(member["chunks"] ?? 0) chunks held\(pace)\(moved)")
                    }
                }
            }
        }
        if let stats {
            print("delivered: \(stats.fulfilments) downloads, \(formatBytes(stats.bytesFromPeers)) from peers, \(formatBytes(stats.bytesFromOrigin)) from the origin, offload ratio \(String(format: "%.1f", stats.offloadRatio * 100))%")
        }
        for endpoint in relays + agents {
            do {
                let report = try askOwn(endpoint, context, security, brokerReport: brokerReport)
                print("\(report.service) \(report.id) at \(endpoint), up since \(report.startedAt)")
                for (key, value) in report.counters.sorted(by: { $0.key < $1.key }) { print("  \(key): \(value)") }
            } catch {
                down.append(endpoint)
                print("\(endpoint): NOT SERVING (\(error))")
            }
        }
        if !down.isEmpty { throw ExitStatus.unreachable }
    }

    /// Nil when the origin can't be reached; its refusal when it answers without the statistics
    /// (they need the operator token).
    func originStats() -> Result<OriginStats, HTTPError>? {
        guard var request = try? operatorOptions.request("GET", "v1/stats") else { return nil }
        request.timeoutInterval = 3
        guard let response = try? BlockingHTTP.send(request) else { return nil }
        guard response.ok, let stats = try? JSONCoding.decoder.decode(OriginStats.self, from: response.body) else {
            let reason = (try? JSONCoding.decoder.decode(ErrorBody.self, from: response.body)).map { "\($0.reason): \($0.error)" }
            return .failure(HTTPError(reason ?? "status \(response.status)"))
        }
        return .success(stats)
    }

    func printJSON(_ context: Context, security: TransportSecurity) throws {
        var failed = false
        // Asked once: its report is printed and also names the relays' keys.
        let brokerReport = Result { try askBroker(context, security) }
        for endpoint in [broker] + relays + agents {
            do {
                let report = endpoint == broker ? try brokerReport.get()
                    : try askOwn(endpoint, context, security, brokerReport: try? brokerReport.get())
                print(String(decoding: try JSONCoding.encoder.encode(report), as: UTF8.self))
            } catch {
                failed = true
                printError("ferry: \(endpoint): \(error)")
            }
        }
        if let stats = try? originStats()?.get() { print(String(decoding: try JSONCoding.encoder.encode(stats), as: UTF8.self)) }
        if failed { throw ExitStatus.unreachable }
    }
}
