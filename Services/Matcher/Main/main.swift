import ArgumentParser
import FerryMatcher
import FerryProtocol
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

        @Option(help: Settings.lagChunks.help)
        var lagChunks = Settings.lagChunks.value

        @Option(help: Settings.lagPercent.help)
        var lagPercent = Settings.lagPercent.value

        @Option(help: Settings.stripes.help)
        var stripes = Settings.stripes.value

        func validate() throws {
            guard LagRule.chunkRange.contains(lagChunks) else {
                throw ValidationError("--lag-chunks must be \(LagRule.chunkRange.lowerBound)...\(LagRule.chunkRange.upperBound)")
            }
            guard LagRule.percentRange.contains(lagPercent) else {
                throw ValidationError("--lag-percent must be \(LagRule.percentRange.lowerBound)...\(LagRule.percentRange.upperBound)")
            }
            guard (1...Stripe.maxCount).contains(stripes) else { throw ValidationError("--stripes must be 1...\(Stripe.maxCount)") }
        }
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        [Matcher.service(MatcherConfig(bind: options.bind, holdingsBind: options.holdingsBind, broker: options.broker,
                                       eventsIn: options.common.eventsIn, statusBind: options.statusBind,
                                       security: try options.common.transport(role: .matcher, logger: logger),
                                       lag: LagRule(chunks: options.lagChunks, percent: options.lagPercent), stripes: options.stripes),
                        logger: logger)]
    }

    static func probe(_ options: Options) throws { try ProbeCommand.run(connectable(options.statusBind)) }
}
