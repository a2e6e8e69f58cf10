import ArgumentParser
import FerryMatcher
import FerryService

@main
struct MatcherCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-matcher",
        abstract: "Peer matching: the holdings index and the choice of which device sends.",
        subcommands: [Run.self, Probe.self], defaultSubcommand: Run.self)

    struct Options: ParsableArguments {
        @OptionGroup var common: CommonOptions

        @Option(help: Topology.matcher.bindHelp("PULL bind address intake pushes requests to."))
        var bind = Topology.matcher.bindEndpoint

        @Option(help: Topology.holdings.bindHelp("SUB bind address agents publish holdings to."))
        var holdingsBind = Topology.holdings.bindEndpoint

        @Option(help: Topology.broker.connectHelp("The broker's PULL endpoint."))
        var broker = Topology.broker.connectEndpoint

        @Option(help: Topology.matcherStatus.bindHelp("Status socket the probe asks."))
        var statusBind = Topology.matcherStatus.bindEndpoint
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run peer matching (the default).")
        @OptionGroup var options: Options

        func run() async throws {
            let logger = ServiceMain.logger("ferry.matcher", level: options.common.level)
            let config = MatcherConfig(bind: options.bind, holdingsBind: options.holdingsBind, broker: options.broker,
                                       eventsIn: options.common.eventsIn, statusBind: options.statusBind,
                                       security: try options.common.transport(role: .matcher, logger: logger))
            try await ServiceMain.run([Matcher.service(config, logger: logger)], logger: logger,
                                     metricsBind: options.common.metrics(for: .matcher))
        }
    }

    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exit 0 if the matcher on this host is serving (a healthcheck).")
        @OptionGroup var options: Options
        func run() throws { try ProbeCommand.run(connectable(options.statusBind)) }
    }
}
