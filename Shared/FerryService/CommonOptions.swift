import ArgumentParser
import Logging

/// Options every service takes.
public struct CommonOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical. Env: FERRY_LOG_LEVEL.")
    public var logLevel: String = Env.string("FERRY_LOG_LEVEL", "info")

    @Option(help: Topology.eventsIn.connectHelp("The event bus's publisher endpoint (XSUB) to connect to."))
    public var eventsIn: String = Topology.eventsIn.connectEndpoint

    @Option(help: "host:port serving Prometheus metrics at /metrics, or off; empty means the service's own default port on 127.0.0.1. Env: FERRY_METRICS_BIND.")
    public var metricsBind: String = Env.string("FERRY_METRICS_BIND", "")

    @Option(help: "The fleet's transport keys (made by `ferry keys fleet DIR`): CurveZMQ on every socket between Ferry processes. Empty: plain TCP. Env: FERRY_TRANSPORT_KEYS.")
    public var transportKeys: String = Env.string("FERRY_TRANSPORT_KEYS", "")

    @Option(help: "Where a service asks whether a device's or relay's key is enrolled: the origin. Env: FERRY_KEY_REGISTRY, else FERRY_ORIGIN_URL.")
    public var keyRegistry: String = Env.string("FERRY_KEY_REGISTRY", Topology.origin.connectEndpoint)

    @Option(help: "Whether the event bus's subscribers must connect with CURVE (a key of the fleet's or on the bus's allow list); off: the stream is readable by whoever reaches its address. Env: FERRY_EVENTS_OUT_CURVE.")
    public var eventsCurve: Bool = Env.bool("FERRY_EVENTS_OUT_CURVE", false)

    public init() {}

    /// The metrics address: as configured, or the service's own port in the topology.
    public func metrics(for service: ServiceName) -> String {
        metricsBind.isEmpty ? "127.0.0.1:\(Topology.metricsPort(service))" : metricsBind
    }

    public var level: Logger.Level { Logger.Level(rawValue: logLevel.lowercased()) ?? .info }
}
