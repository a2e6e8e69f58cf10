import ArgumentParser
import Logging

/// Options every service takes.
public struct CommonOptions: ParsableArguments {
    @Option(help: Settings.logLevel.help)
    public var logLevel: String = Settings.logLevel.value

    @Option(help: Topology.eventsIn.connectHelp("The event bus's publisher endpoint (XSUB) to connect to."))
    public var eventsIn: String = Topology.eventsIn.connectEndpoint

    @Option(help: Settings.metricsBind.help)
    public var metricsBind: String = Settings.metricsBind.value

    @Option(help: Settings.transportKeys.help)
    public var transportKeys: String = Settings.transportKeys.value

    @Option(help: Settings.keyRegistry.help)
    public var keyRegistry: String = Settings.keyRegistry.value

    @Option(help: Settings.eventsOutCurve.help)
    public var eventsCurve: Bool = Settings.eventsOutCurve.value

    public init() {}

    /// The metrics address: as configured, or the service's own port in the topology.
    public func metrics(for service: ServiceName) -> String {
        metricsBind.isEmpty ? "127.0.0.1:\(Topology.metricsPort(service))" : metricsBind
    }

    public var level: Logger.Level { Logger.Level(rawValue: logLevel.lowercased()) ?? .info }
}
