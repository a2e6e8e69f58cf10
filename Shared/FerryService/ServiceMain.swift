import Foundation
import Logging
import ServiceLifecycle

/// How every Ferry executable runs: swift-log to standard error, then a `ServiceGroup` that
/// shuts its services down gracefully on SIGTERM or SIGINT, in reverse start order.
public enum ServiceMain {
    /// Sets up logging, metrics and libzmq's routing ids for the process; call it first.
    public static func logger(_ label: String, level: Logger.Level) -> Logger {
        unpredictableRoutingIds()
        MetricsEndpoint.bootstrap()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }

    /// Runs the services, plus `/metrics` on `metricsBind` (`host:port`, or `off`).
    public static func run(_ services: [any Service], logger: Logger, metricsBind: String) async throws {
        var all = services
        if let metrics = MetricsEndpoint.service(bind: metricsBind, logger: logger) { all.append(metrics) }
        let group = ServiceGroup(configuration: .init(
            services: all.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger))
        try await group.run()
    }

    /// A ROUTER names each connection that names itself nothing `0x00` and a counter that starts
    /// at C `rand()`, which libzmq never seeds: every process's ROUTERs hand out the same ids in
    /// the same order. libzmq lets a client name itself such an id, so a party that knew the
    /// counter could take over another's route at the broker, or take the ids ahead of it and
    /// abort the process (libzmq asserts when it generates an id a client already holds). Seeded
    /// in `logger`, which every executable calls before it makes a socket.
    static func unpredictableRoutingIds() {
        srand(UInt32.random(in: .min ... .max))
    }
}
