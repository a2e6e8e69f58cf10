import ArgumentParser
import FerryProtocol
import FerryService
import Foundation

struct Fulfilments: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the fulfilments the origin has recorded (as the operator).")

    @OptionGroup var operatorOptions: OperatorOptions

    @Flag(help: "Print the records as JSON.")
    var json = false

    func run() throws {
        let records: [Fulfilment] = try operatorOptions.all("v1/fulfilments") { $0.requestId.rawValue }
        if json {
            print(String(decoding: try JSONCoding.encoder.encode(records), as: UTF8.self))
            return
        }
        for record in records {
            let peers = record.sources.filter { $0.kind == .peer }.compactMap { $0.device?.rawValue }
            print("\(record.requestId) device=\(record.deviceId) content=\(record.contentId.short)… size=\(formatBytes(record.size)) "
                  + "peers=\(formatBytes(record.bytesFromPeers))\(peers.isEmpty ? "" : " (\(peers.joined(separator: ",")))") "
                  + "origin=\(formatBytes(record.bytesFromOrigin)) verification=\(record.verification.rawValue) at \(record.recordedAt)")
        }
        if records.isEmpty { print("no fulfilments recorded") }
    }
}
