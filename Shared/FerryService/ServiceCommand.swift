import ArgumentParser
import Logging
import ServiceLifecycle

/// A service's options: its own, and those every service takes.
public protocol ServiceOptions: ParsableArguments {
    var common: CommonOptions { get }
}

/// What a Ferry executable is: which service, what it does, what it runs given its options
/// and how it is probed. `ferry-X [run]` and `ferry-X probe` are built from this, the same for
/// every service: logging, metrics and graceful shutdown are `ServiceMain`'s.
public protocol ServiceCommand: AsyncParsableCommand {
    associatedtype Options: ServiceOptions
    static var service: ServiceName { get }
    static var abstract: String { get }
    /// What `probe` checks, for its help; default: that the service answers its status socket.
    static var probeAbstract: String { get }
    static func services(_ options: Options, logger: Logger) throws -> [any Service]
    /// Asks the running service on this host; throws `ExitCode(1)` when it isn't serving.
    static func probe(_ options: Options) throws
    /// Where `/metrics` is served; default: `FERRY_METRICS_BIND`, else the service's own port.
    static func metricsBind(_ options: Options) -> String
}

extension ServiceCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "ferry-\(service.rawValue)", abstract: abstract,
                             subcommands: [RunService<Self>.self, ProbeService<Self>.self], defaultSubcommand: RunService<Self>.self)
    }

    public static var probeAbstract: String { "Exit 0 if ferry-\(service.rawValue) on this host is serving (a healthcheck)." }

    public static func metricsBind(_ options: Options) -> String { options.common.metrics(for: service) }
}

/// `ferry-X run`, the default: the service until SIGTERM or SIGINT.
public struct RunService<Command: ServiceCommand>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "run", abstract: "Run ferry-\(Command.service.rawValue) (the default).")
    }

    @OptionGroup public var options: Command.Options

    public init() {}

    public func run() async throws {
        let logger = ServiceMain.logger("ferry.\(Command.service.rawValue)", level: options.common.level)
        try await ServiceMain.run(try Command.services(options, logger: logger), logger: logger, metricsBind: Command.metricsBind(options))
    }
}

/// `ferry-X probe`: the healthcheck.
public struct ProbeService<Command: ServiceCommand>: ParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "probe", abstract: Command.probeAbstract)
    }

    @OptionGroup public var options: Command.Options

    public init() {}

    public func run() throws { try Command.probe(options) }
}
