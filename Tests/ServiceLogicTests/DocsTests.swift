@testable import FerryAgent
@testable import FerryBroker
@testable import FerryIntake
@testable import FerryRelay
import FerryProtocol
import FerryService
import Foundation
import Testing

/// docs/ must stay true: every configuration variable the code reads, every event topic and
/// every wire message kind is documented.
@Suite struct DocsMatchTheCode {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func read(_ relative: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(relative), encoding: .utf8)
    }

    static func sources(under folder: String) -> [String] {
        let base = root.appendingPathComponent(folder)
        let files = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
        return files.filter { $0.pathExtension == "swift" }.compactMap { try? String(contentsOf: $0, encoding: .utf8) }
    }

    static func matches(of pattern: String, in text: String) -> Set<String> {
        let regex = try! NSRegularExpression(pattern: pattern)
        return Set(regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { match in
            Range(match.range(at: match.numberOfRanges - 1), in: text).map { String(text[$0]) }
        })
    }

    @Test func everyVariableIsInConfigurationMD() throws {
        let code = (Self.sources(under: "Services") + Self.sources(under: "Shared")).joined(separator: "\n")
        let variables = Self.matches(of: #"(FERRY_[A-Z_]+)"#, in: code)
        #expect(variables.count > 20)
        let doc = try Self.read("docs/configuration.md")
        let missing = variables.filter { !doc.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "undocumented in docs/configuration.md: \(missing)")
    }

    /// Each setting's row in docs/configuration.md gives the default the code has: the value
    /// itself, or "empty" for an empty string.
    @Test func everySettingsDefaultIsTheDocumentedOne() throws {
        let doc = try Self.read("docs/configuration.md")
        let rows = doc.split(separator: "\n").filter { $0.hasPrefix("| `FERRY_") }
        #expect(Settings.all.count > 35)
        var wrong: [String] = []
        for setting in Settings.all {
            let defaults = rows.filter { $0.hasPrefix("| `\(setting.variable)` |") }.map { row in
                row.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }[4]
            }
            let expected = setting.defaultText.isEmpty ? "empty" : setting.defaultText
            if !defaults.contains(where: { $0.hasPrefix(expected) || $0.hasPrefix("`\(expected)`") || $0.contains("`\(expected)`") }) {
                wrong.append("\(setting.variable): the code's default is \(expected), the docs say \(defaults)")
            }
        }
        #expect(wrong.isEmpty, "\(wrong.joined(separator: "\n"))")
    }

    @Test func everyEventTopicIsInEventsMD() throws {
        let doc = try Self.read("docs/events.md")
        let missing = EventTopic.allCases.map(\.rawValue).filter { !doc.contains("`\($0)`") }
        #expect(missing.isEmpty, "undocumented in docs/events.md: \(missing)")
    }

    /// The event bus enforces `EventTopic.publishers`; the publisher column of docs/events.md is
    /// what operators read, so the two must say the same.
    @Test func eachTopicsPublishersAreTheOnesEventsMDNames() throws {
        let doc = try Self.read("docs/events.md")
        for topic in EventTopic.allCases {
            let row = try #require(doc.split(separator: "\n").first { $0.hasPrefix("| `\(topic.rawValue)` | ") }, "no row for \(topic.rawValue)")
            let column = row.split(separator: "|", omittingEmptySubsequences: false)[2]
            // "reporter (publisher `reporter.outbox`)" names the reporter.
            let named = Set(column.split(separator: "(")[0].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(named == Set(topic.publishers.map(\.rawValue)), "\(topic.rawValue): docs say \(named.sorted()), the bus allows \(topic.publishers.map(\.rawValue).sorted())")
        }
    }

    @Test func everyMessageKindIsInProtocolMD() throws {
        let code = Self.sources(under: "Shared/FerryProtocol").joined(separator: "\n")
        let kinds = Self.matches(of: #"static let kind = "([a-z.]+)""#, in: code)
        #expect(kinds.count > 15)
        let doc = try Self.read("docs/protocol.md")
        let missing = kinds.filter { !doc.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "undocumented in docs/protocol.md: \(missing)")
    }

    /// docs/configuration.md's port table says what `Topology` says: a row per bound socket,
    /// with its name, pattern, variables and who is admitted, and each service's metrics port.
    @Test func thePortTableIsTheTopology() throws {
        let doc = try Self.read("docs/configuration.md").split(separator: "\n").map(String.init)
        let table = doc.filter { $0.hasPrefix("| `tcp://") || $0.hasPrefix("| `http://") }
        #expect(table.count == Topology.all.count, "the port table has \(table.count) socket rows, the topology \(Topology.all.count)")
        for socket in Topology.all {
            let row = try #require(table.first { $0.hasPrefix("| `\(socket.defaultEndpoint)` |") }, "no row for \(socket.name)")
            let columns = row.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(columns[2] == socket.name && columns[3] == socket.pattern.rawValue, "\(socket.name): \(columns[2]), \(columns[3])")
            #expect(columns[4].contains("`\(socket.bindVariable)`"), "\(socket.name) is bound from \(socket.bindVariable)")
            if let connect = socket.connectVariable { #expect(columns[5].contains("`\(connect)`"), "\(socket.name) is reached from \(connect)") }
            let keys = columns[6]
            switch socket.admission {
            case .curve(let domain): #expect(keys.hasPrefix("CURVE, `\(domain.rawValue)`"), "\(socket.name): \(keys)")
            case .plain: #expect(keys.hasPrefix("plain") && !keys.contains("CURVE"), "\(socket.name): \(keys)")
            case .plainUnlessCurveEvents: #expect(keys.hasPrefix("plain") && keys.contains("CURVE, `listed`"), "\(socket.name): \(keys)")
            case .http: #expect(keys == "plain HTTP", "\(socket.name): \(keys)")
            }
        }
        let metrics = try #require(doc.first { $0.hasPrefix("| `127.0.0.1:9100` ") })
        for service in ServiceName.allCases where service != .origin {
            let name = service == .eventbus ? "event bus" : service.rawValue
            #expect(metrics.contains("\(name) \(Topology.metricsPort(service))"), "\(name)'s metrics port")
        }
    }

    /// compose/compose.yaml binds and reaches every socket at the topology's port, under the
    /// variable the topology names for it.
    @Test func composeUsesTheTopologysPortsAndVariables() throws {
        let compose = try Self.read("compose/compose.yaml")
        let regex = try NSRegularExpression(pattern: #"(FERRY_[A-Z_]+): (tcp|http)://([^:\s]+):(\d+)"#)
        let settings = regex.matches(in: compose, range: NSRange(compose.startIndex..., in: compose)).map { match in
            (1...4).map { String(compose[Range(match.range(at: $0), in: compose)!]) }
        }
        #expect(settings.count > 15)
        for setting in settings {
            let (variable, host, port) = (setting[0], setting[2], Int(setting[3]) ?? 0)
            guard let socket = Topology.all.first(where: { $0.port == port }) else {
                Issue.record("compose names port \(port) (\(variable)), which no socket has")
                continue
            }
            // A forwarding device's agent binds a relay socket of its own (FERRY_FORWARD_BIND).
            let names = [socket.bindVariable, socket.connectVariable].compactMap { $0 } + (socket == Topology.origin ? ["FERRY_KEY_REGISTRY"] : [])
                + (socket == Topology.relay ? ["FERRY_FORWARD_BIND"] : [])
            #expect(names.contains(variable), "compose sets \(variable) to port \(port), which is \(socket.name)'s (\(names))")
            if variable == socket.bindVariable && socket.owner != .agent { #expect(host == "*", "\(variable) binds \(host), not every interface") }
        }
        // Published as "${NAME_HOST_PORT:-PORT}:PORT": the host side can be moved, the default is the socket's own.
        let published = Self.matches(of: #"- "\$\{[A-Z_]+:-(\d+)\}:\1""#, in: compose)
        #expect(published.count == 2, "compose publishes the origin and the event stream, nothing else: \(published)")
        for port in published {
            #expect(Topology.all.contains { $0.port == Int(port) }, "compose publishes \(port), which no socket has")
        }
    }

    /// Every counter the broker's status can show is in docs/protocol.md's status table.
    @Test func everyBrokerCounterIsInProtocolMD() throws {
        let missing = try Self.unnamed(BrokerCount.allCases.map(\.rawValue), inRow: "| broker | `sessionsActive`", of: "docs/protocol.md")
        #expect(missing.isEmpty, "broker counters not in docs/protocol.md: \(missing)")
    }

    /// Every reason the relay drops a frame for is in docs/protocol.md's table of drops.
    @Test func everyRelayDropReasonIsInProtocolMD() throws {
        let doc = try Self.read("docs/protocol.md")
        let table = doc.components(separatedBy: "| reason | cause |").dropFirst().first?.components(separatedBy: "\n\n").first ?? ""
        let missing = RelayDrop.allCases.map(\.rawValue).filter { !table.contains("`\($0)`") }
        #expect(!table.isEmpty && missing.isEmpty, "relay drop reasons not in docs/protocol.md: \(missing)")
    }

    /// Every counter an agent's status can show is in docs/protocol.md's status table.
    @Test func everyAgentCounterIsInProtocolMD() throws {
        let missing = try Self.unnamed(AgentCount.allCases.map(\.rawValue), inRow: "| agent | `welcomed`", of: "docs/protocol.md")
        #expect(missing.isEmpty, "agent counters not in docs/protocol.md: \(missing)")
    }

    /// Every reason intake refuses a message for is named in docs/events.md's `request.rejected` row.
    @Test func everyIntakeRefusalIsInEventsMD() throws {
        let missing = try Self.unnamed(RequestAdmission.Refusal.allCases.map(\.rawValue), inRow: "| `request.rejected` |", of: "docs/events.md")
        #expect(missing.isEmpty, "intake refusals not in docs/events.md: \(missing)")
    }

    /// Every reason the origin serves a request for, the broker cancels a session for, or a
    /// device ends its side short for is named in its message's row of docs/protocol.md.
    @Test func everySessionReasonIsInProtocolMD() throws {
        let origin = try Self.unnamed(OriginReason.allCases.map(\.rawValue), inRow: "| `reason` | string | The matcher's reason", of: "docs/protocol.md")
        let cancel = try Self.unnamed(CancelReason.allCases.map(\.rawValue), inRow: "| `reason` | string | `relay-lost`", of: "docs/protocol.md")
        let finish = try Self.unnamed(FinishReason.allCases.map(\.rawValue), inRow: "| `reason` | string, optional | Why, when not completed", of: "docs/protocol.md")
        #expect(origin.isEmpty && cancel.isEmpty && finish.isEmpty, "not in docs/protocol.md: origin \(origin), cancel \(cancel), finish \(finish)")
    }

    /// Every topic has a typed payload, and docs/events.md's row for it names each field the
    /// payload can carry (audited changes also `actor` and `auditSeq`).
    @Test func everyEventsFieldsAreInItsRowOfEventsMD() throws {
        let typed = Set(EventData.all.map { $0.topic })
        #expect(typed == Set(EventTopic.allCases), "topics without a payload: \(Set(EventTopic.allCases).subtracting(typed))")
        var missing: [String] = []
        for payload in EventData.all {
            let audited = payload is any AuditDetail.Type ? ["actor", "auditSeq"] : []
            let unnamed = try Self.unnamed(payload.fieldNames + audited, inRow: "| `\(payload.topic.rawValue)` |", of: "docs/events.md")
            if !unnamed.isEmpty { missing.append("\(payload.topic.rawValue): \(unnamed)") }
        }
        #expect(missing.isEmpty, "fields not in docs/events.md: \(missing)")
    }

    /// Those of `names` that the row of `file` beginning with `prefix` doesn't spell (in backticks).
    static func unnamed(_ names: [String], inRow prefix: String, of file: String) throws -> [String] {
        let row = try #require(try read(file).split(separator: "\n").first { $0.hasPrefix(prefix) }, "no row \(prefix) in \(file)")
        return names.filter { !row.contains("`\($0)`") }
    }
}
