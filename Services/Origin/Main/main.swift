import ArgumentParser
import FerryOrigin
import FerryService
import Foundation
import Logging
import ServiceLifecycle

@main
struct OriginCommand: ServiceCommand {
    static let service = ServiceName.origin
    static let abstract = "The origin: an HTTP download server that hands requests to Ferry and records fulfilments."
    static let probeAbstract = "Exit 0 if the origin on this host answers /health (a healthcheck)."

    struct Options: ServiceOptions {
        @OptionGroup var common: CommonOptions

        @Option(help: "Address to listen on. Env: FERRY_ORIGIN_HOST.")
        var host = Env.string("FERRY_ORIGIN_HOST", "127.0.0.1")

        @Option(help: "Port to listen on. Env: FERRY_ORIGIN_PORT.")
        var port = Env.int("FERRY_ORIGIN_PORT", 7080)

        @Option(help: "Base URL requests name as their server (where fulfilments go). Env: FERRY_ORIGIN_URL.")
        var publicURL = Env.string("FERRY_ORIGIN_URL", "")

        @Option(help: "Where content, manifests and the fulfilment records live. Env: FERRY_ORIGIN_DATA.")
        var dataDir = Env.string("FERRY_ORIGIN_DATA", "./run/origin")

        @Option(help: Topology.intake.connectHelp("Request intake's PULL endpoint."))
        var intake = Topology.intake.connectEndpoint

        @Option(help: Topology.eventsOut.connectHelp("The event bus's subscriber endpoint, which feeds the status page."))
        var eventsOut = Topology.eventsOut.connectEndpoint

        @Option(help: "Chunk size in bytes for new content. Env: FERRY_CHUNK_SIZE.")
        var chunkSize = Env.int("FERRY_CHUNK_SIZE", 256 << 10)

        @Option(help: "Packet size in bytes for new content. Env: FERRY_PACKET_SIZE.")
        var packetSize = Env.int("FERRY_PACKET_SIZE", 64 << 10)

        @Option(help: "The operator's bearer token for publishing and withdrawing (at least 16 characters); empty: the one in <data-dir>/operator.token, made on first start. Env: FERRY_OPERATOR_TOKEN.")
        var operatorToken = Env.string("FERRY_OPERATOR_TOKEN", "")

        @Option(help: "Where the standing join tokens (device.token, relay.token: reusable, for replicas) are written on first start; empty: <data-dir>/join-tokens. Env: FERRY_JOIN_TOKEN_DIR.")
        var joinTokenDir = Env.string("FERRY_JOIN_TOKEN_DIR", "")

        @Option(help: "The reporter's Ed25519 public key (base64) or a file holding it; fulfilments it didn't sign are refused. Empty: the fleet's public/reporter-signing.key with transport keys, else ./run/reporter/reporter-signing.pub. Env: FERRY_REPORTER_KEY.")
        var reporterKey = Env.string("FERRY_REPORTER_KEY", "")

        func validate() throws {
            guard (1...65535).contains(port) else { throw ValidationError("--port must be 1-65535") }
            guard chunkSize > 0, chunkSize <= Int(UInt32.max), packetSize > 0, packetSize <= Int(UInt32.max) else {
                throw ValidationError("--chunk-size and --packet-size must be positive")
            }
        }
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        let host = options.host, port = options.port
        var url = options.publicURL
        if url.isEmpty {
            // A wildcard address is no place to send fulfilments to; say so rather than use it.
            let wildcard = ["0.0.0.0", "::", "[::]"].contains(host)
            url = "http://\(wildcard ? "127.0.0.1" : host):\(port)"
            if wildcard { logger.warning("listening on \(host) without FERRY_ORIGIN_URL: requests will name \(url) as their server") }
        }
        let security = try options.common.transport(role: .origin, logger: logger)
        let reporterKey = !options.reporterKey.isEmpty ? options.reporterKey : security.isOn ? nil : "./run/reporter/reporter-signing.pub"
        return try Origin.services(OriginConfig(host: host, port: port, publicURL: url, dataDirectory: options.dataDir, intake: options.intake,
                                                eventsIn: options.common.eventsIn, eventsOut: options.eventsOut,
                                                chunkSize: UInt32(options.chunkSize), packetSize: UInt32(options.packetSize),
                                                operatorToken: options.operatorToken.isEmpty ? nil : options.operatorToken,
                                                joinTokenDirectory: options.joinTokenDir.isEmpty ? nil : options.joinTokenDir,
                                                reporterKey: reporterKey, security: security, eventsCurve: options.common.eventsCurve),
                                   logger: logger)
    }

    /// The origin answers /metrics on its own HTTP port, so FERRY_METRICS_BIND only adds a second one.
    static func metricsBind(_ options: Options) -> String { options.common.metricsBind.isEmpty ? "off" : options.common.metricsBind }

    static func probe(_ options: Options) throws {
        let wildcard = ["0.0.0.0", "::", "[::]"].contains(options.host)
        let url = URL(string: "http://\(wildcard ? "127.0.0.1" : options.host):\(options.port)/health")!
        guard let response = try? BlockingHTTP.get(url, timeout: 3), response.ok else {
            print("origin: not serving at \(url)")
            throw ExitCode(1)
        }
        print("origin: serving at \(url)")
    }
}
