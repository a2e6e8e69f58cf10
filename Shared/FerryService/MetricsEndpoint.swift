import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// Prometheus metrics for a service: swift-metrics is bootstrapped with a Prometheus registry,
/// and `GET /metrics` serves it on the service's metrics address.
public enum MetricsEndpoint {
    static let registry = PrometheusCollectorRegistry()

    /// Bootstraps swift-metrics; `ServiceMain.logger` calls it first thing, before any service
    /// creates a metric (one made earlier would stay a no-op).
    static func bootstrap() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    /// The HTTP service for `bind` (`host:port`; empty for none). Failing to bind costs only
    /// the metrics, with a warning, never the service itself.
    public static func service(bind: String, logger: Logger) -> (any Service)? {
        guard !bind.isEmpty, bind != "off" else { return nil }
        let parts = bind.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else {
            logger.warning("FERRY_METRICS_BIND must be host:port (got \(bind)); no metrics")
            return nil
        }
        let router = Router()
        router.get("/metrics") { _, _ in response() }
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        let app = Application(router: router, configuration: .init(address: .hostname(String(parts[0]), port: port), serverName: "ferry-metrics"),
                              logger: quiet)
        return Optional(Tolerant(inner: app, what: "metrics on \(bind)", logger: logger))
    }

    /// The registry in Prometheus's text format, for any HTTP server to answer `/metrics` with.
    public static func response() -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                 body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }

    /// Runs `inner`; if it fails, logs it and waits for shutdown instead of taking the group down.
    struct Tolerant: Service {
        let inner: any Service
        let what: String
        let logger: Logger

        func run() async throws {
            do {
                try await inner.run()
            } catch {
                logger.warning("\(what) unavailable: \(error)")
                try? await gracefulShutdown()
            }
        }
    }
}
