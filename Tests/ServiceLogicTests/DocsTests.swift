import FerryProtocol
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
}
