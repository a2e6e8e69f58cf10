import ArgumentParser
import Logging

/// Options every service takes.
public struct CommonOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical. Env: FERRY_LOG_LEVEL.")
    public var logLevel: String = Env.string("FERRY_LOG_LEVEL", "info")

    @Option(help: "The event bus's publisher endpoint (XSUB) to connect to. Env: FERRY_EVENTS_IN.")
    public var eventsIn: String = Env.string("FERRY_EVENTS_IN", "tcp://127.0.0.1:7301")

    @Option(help: "host:port serving Prometheus metrics at /metrics, or off; empty means the service's own default port on 127.0.0.1. Env: FERRY_METRICS_BIND.")
    public var metricsBind: String = Env.string("FERRY_METRICS_BIND", "")

    public init() {}

    /// The metrics address: as configured, or the service's documented default.
    public func metrics(defaultPort: Int) -> String {
        metricsBind.isEmpty ? "127.0.0.1:\(defaultPort)" : metricsBind
    }

    public var level: Logger.Level { Logger.Level(rawValue: logLevel.lowercased()) ?? .info }
}
