import ArgumentParser
import FerryMatcher
import FerryService

@main
struct MatcherCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-matcher",
        abstract: "Peer matching: the holdings index and the choice of which device sends.")

    @OptionGroup var common: CommonOptions

    @Option(help: "PULL bind address intake pushes requests to. Env: FERRY_MATCHER_BIND.")
    var bind = Env.string("FERRY_MATCHER_BIND", DefaultEndpoint.matcher)

    @Option(help: "SUB bind address agents publish holdings to. Env: FERRY_HOLDINGS_BIND.")
    var holdingsBind = Env.string("FERRY_HOLDINGS_BIND", DefaultEndpoint.holdings)

    @Option(help: "The broker's PULL endpoint. Env: FERRY_BROKER_ENDPOINT.")
    var broker = Env.string("FERRY_BROKER_ENDPOINT", DefaultEndpoint.broker)

    func run() async throws {
        let logger = ServiceMain.logger("ferry.matcher", level: common.level)
        let config = MatcherConfig(bind: bind, holdingsBind: holdingsBind, broker: broker, eventsIn: common.eventsIn)
        try await ServiceMain.run([Matcher.service(config, logger: logger)], logger: logger)
    }
}
