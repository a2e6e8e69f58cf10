import ArgumentParser
import FerryProtocol
import FerryService
import Foundation

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the origin's audit trail (as the operator): enrolments, revocations, join tokens, publishes and withdrawals, with who and when.")

    @OptionGroup var operatorOptions: OperatorOptions

    @Option(help: "Only entries after this one (its seq).")
    var after: Int64?

    @Flag(help: "Print the entries as JSON.")
    var json = false

    func run() throws {
        let entries: [AuditEntry] = try operatorOptions.all("v1/audit", from: after.map(String.init)) { String($0.seq) }
        if json { return print(String(decoding: try JSONCoding.encoder.encode(entries), as: UTF8.self)) }
        for entry in entries {
            let detail = entry.detail.filter { $0.key != "deviceId" && $0.key != "tokenId" && $0.key != "contentId" }
                .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            print(([String(entry.seq), entry.at, entry.action.rawValue, entry.subject, "by \(entry.actor)"]
                   + (entry.address.map { ["from \($0)"] } ?? []) + detail).joined(separator: "  "))
        }
        if entries.isEmpty { print("no entries") }
    }
}
