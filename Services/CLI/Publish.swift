import ArgumentParser
import FerryContent
import FerryProtocol
import FerryService
import Foundation

struct Publish: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publish a file at the origin and print its content id.")

    @Argument(help: "The file to publish.")
    var file: String

    @OptionGroup var operatorOptions: OperatorOptions

    @Option(help: "The name devices see; defaults to the file's name.")
    var name: String?

    @Option(help: "A device that may get it (repeat for more). Name the audience: --allow or --all-devices.")
    var allow: [String] = []

    @Flag(help: "Every enrolled device may get it.")
    var allDevices = false

    @Flag(name: .shortAndLong, help: "Print only the content id.")
    var quiet = false

    @Flag(help: "Print the manifest summary as JSON.")
    var json = false

    func validate() throws {
        guard allow.isEmpty == allDevices else { throw ValidationError("name the audience: --allow ID (repeatable) or --all-devices, not both") }
    }

    func run() throws {
        let url = URL(fileURLWithPath: file)
        guard FileManager.default.isReadableFile(atPath: url.path) else { throw ValidationError("cannot read \(file)") }
        let origin = operatorOptions.origin
        guard var components = URLComponents(string: origin) else { throw ValidationError("origin \(origin) is not a URL") }
        components.path = "/v1/content"
        components.queryItems = [URLQueryItem(name: "name", value: name ?? url.lastPathComponent)]
        components.queryItems?.append(allDevices ? URLQueryItem(name: "audience", value: "all")
                                                 : URLQueryItem(name: "allow", value: allow.joined(separator: ",")))
        let response = try operatorOptions.answer { try BlockingHTTP.upload(components.url!, file: url, headers: operatorOptions.authorization) }
        let manifest = try ManifestCodec.decode(response.body)
        if json {
            print(String(decoding: try JSONCoding.encoder.encode(manifest.summary), as: UTF8.self))
        } else if quiet {
            print(manifest.contentId.hex)
        } else {
            print("published \(manifest.name): \(formatBytes(manifest.size)), \(manifest.chunkHashes.count) chunks of \(formatBytes(UInt64(manifest.chunkSize)))")
            print("content id \(manifest.contentId.hex)")
        }
    }
}
