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

        @Option(help: Settings.originHost.help)
        var host = Settings.originHost.value

        @Option(help: Settings.originPort.help)
        var port = Settings.originPort.value

        @Option(help: Settings.originUrl.help)
        var publicURL = Settings.originUrl.value

        @Option(help: Settings.originData.help)
        var dataDir = Settings.originData.value

        @Option(help: Topology.intake.connectHelp("Request intake's PULL endpoint."))
        var intake = Topology.intake.connectEndpoint

        @Option(help: Topology.eventsOut.connectHelp("The event bus's subscriber endpoint, which feeds the status page."))
        var eventsOut = Topology.eventsOut.connectEndpoint

        @Option(help: Settings.chunkSize.help)
        var chunkSize = Settings.chunkSize.value

        @Option(help: Settings.packetSize.help)
        var packetSize = Settings.packetSize.value

        @Option(help: Settings.operatorToken.help("The operator's bearer token for publishing and withdrawing (at least 16 characters); empty: the one in <data-dir>/operator.token, made on first start."))
        var operatorToken = Settings.operatorToken.value

        @Option(help: Settings.joinTokenDir.help)
        var joinTokenDir = Settings.joinTokenDir.value

        @Option(help: Settings.relayJoinTokenDir.help)
        var relayJoinTokenDir = Settings.relayJoinTokenDir.value

        @Option(help: Settings.reporterKey.help)
        var reporterKey = Settings.reporterKey.value

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
                                                relayJoinTokenDirectory: options.relayJoinTokenDir.isEmpty ? nil : options.relayJoinTokenDir,
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
