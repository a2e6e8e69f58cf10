import Foundation
import Logging
import ServiceLifecycle

/// How every Ferry executable runs: swift-log to standard error, then a `ServiceGroup` that
/// shuts its services down gracefully on SIGTERM or SIGINT, in reverse start order.
public enum ServiceMain {
    public static func logger(_ label: String, level: Logger.Level) -> Logger {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }

    public static func run(_ services: [any Service], logger: Logger) async throws {
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger))
        try await group.run()
    }
}
