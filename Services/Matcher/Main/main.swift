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

        @Option(help: "PULL bind address intake pushes requests to. Env: FERRY_MATCHER_BIND.")
        var bind = Env.string("FERRY_MATCHER_BIND", DefaultEndpoint.matcher)

        @Option(help: "SUB bind address agents publish holdings to. Env: FERRY_HOLDINGS_BIND.")
        var holdingsBind = Env.string("FERRY_HOLDINGS_BIND", DefaultEndpoint.holdings)

        @Option(help: "The broker's PULL endpoint. Env: FERRY_BROKER_ENDPOINT.")
        var broker = Env.string("FERRY_BROKER_ENDPOINT", DefaultEndpoint.broker)

        @Option(help: "Status socket the probe asks. Env: FERRY_MATCHER_STATUS_BIND.")
        var statusBind = Env.string("FERRY_MATCHER_STATUS_BIND", DefaultEndpoint.matcherStatus)
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
                                     metricsBind: options.common.metrics(defaultPort: 9110))
        }
    }

    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exit 0 if the matcher on this host is serving (a healthcheck).")
        @OptionGroup var options: Options
        func run() throws { try ProbeCommand.run(connectable(options.statusBind)) }
    }
}
