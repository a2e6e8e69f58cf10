import ArgumentParser
import FerryMatcher
import FerryService
import Logging
import ServiceLifecycle

@main
struct MatcherCommand: ServiceCommand {
    static let service = ServiceName.matcher
    static let abstract = "Peer matching: the holdings index and the choice of which device sends."

    struct Options: ServiceOptions {
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

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        [Matcher.service(MatcherConfig(bind: options.bind, holdingsBind: options.holdingsBind, broker: options.broker,
                                       eventsIn: options.common.eventsIn, statusBind: options.statusBind,
                                       security: try options.common.transport(role: .matcher, logger: logger)), logger: logger)]
    }

    static func probe(_ options: Options) throws { try ProbeCommand.run(connectable(options.statusBind)) }
}
