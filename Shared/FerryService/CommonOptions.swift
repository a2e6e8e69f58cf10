import ArgumentParser
import Logging

/// Options every service takes.
public struct CommonOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical. Env: FERRY_LOG_LEVEL.")
    public var logLevel: String = Env.string("FERRY_LOG_LEVEL", "info")

    @Option(help: "The event bus's publisher endpoint (XSUB) to connect to. Env: FERRY_EVENTS_IN.")
    public var eventsIn: String = Env.string("FERRY_EVENTS_IN", "tcp://127.0.0.1:7301")

    public init() {}

    public var level: Logger.Level { Logger.Level(rawValue: logLevel.lowercased()) ?? .info }
}
