import ArgumentParser
import FerryOrigin
import FerryService

@main
struct OriginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-origin",
        abstract: "The origin: an HTTP download server that hands requests to Ferry and records fulfilments.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Address to listen on. Env: FERRY_ORIGIN_HOST.")
    var host = Env.string("FERRY_ORIGIN_HOST", "127.0.0.1")

    @Option(help: "Port to listen on. Env: FERRY_ORIGIN_PORT.")
    var port = Env.int("FERRY_ORIGIN_PORT", 7080)

    @Option(help: "Base URL requests name as their server (where fulfilments go). Env: FERRY_ORIGIN_URL.")
    var publicURL = Env.string("FERRY_ORIGIN_URL", "")

    @Option(help: "Where content, manifests and the fulfilment records live. Env: FERRY_ORIGIN_DATA.")
    var dataDir = Env.string("FERRY_ORIGIN_DATA", "./run/origin")

    @Option(help: "Request intake's PULL endpoint. Env: FERRY_INTAKE_ENDPOINT.")
    var intake = Env.string("FERRY_INTAKE_ENDPOINT", DefaultEndpoint.intake)

    @Option(help: "Chunk size in bytes for new content. Env: FERRY_CHUNK_SIZE.")
    var chunkSize = Env.int("FERRY_CHUNK_SIZE", 256 << 10)

    @Option(help: "Packet size in bytes for new content. Env: FERRY_PACKET_SIZE.")
    var packetSize = Env.int("FERRY_PACKET_SIZE", 64 << 10)

    func run() async throws {
        let logger = ServiceMain.logger("ferry.origin", level: common.level)
        let config = OriginConfig(host: host, port: port, publicURL: publicURL.isEmpty ? "http://\(host):\(port)" : publicURL,
                                  dataDirectory: dataDir, intake: intake, eventsIn: common.eventsIn,
                                  chunkSize: UInt32(chunkSize), packetSize: UInt32(packetSize))
        try await ServiceMain.run([try Origin.application(config, logger: logger)], logger: logger)
    }
}
