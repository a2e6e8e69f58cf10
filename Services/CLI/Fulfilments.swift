import ArgumentParser
import FerryProtocol
import FerryService
import Foundation

struct Fulfilments: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the fulfilments the origin has recorded.")

    @Option(help: "The origin's base URL. Env: FERRY_ORIGIN_URL.")
    var origin = Env.string("FERRY_ORIGIN_URL", DefaultEndpoint.originURL)

    @Flag(help: "Print the records as JSON.")
    var json = false

    func run() throws {
        guard let url = URL(string: origin)?.appendingPathComponent("v1/fulfilments") else { throw ValidationError("origin is not a URL") }
        let response: HTTPResponse
        do {
            response = try BlockingHTTP.get(url, timeout: 10)
        } catch {
            printError("ferry: cannot reach the origin: \(error)")
            throw ExitStatus.unreachable
        }
        guard response.ok else { throw ExitStatus.failed }
        let records = try JSONCoding.decoder.decode([Fulfilment].self, from: response.body)
        if json {
            print(String(decoding: response.body, as: UTF8.self))
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
