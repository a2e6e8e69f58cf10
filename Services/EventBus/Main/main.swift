import ArgumentParser
import FerryEventBus
import FerryService

@main
struct EventBusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-eventbus",
        abstract: "The event stream: services publish to one address, users subscribe to another.")

    @OptionGroup var common: CommonOptions

    @Option(help: "XSUB bind address publishers connect to. Env: FERRY_EVENTS_IN_BIND.")
    var publishersBind = Env.string("FERRY_EVENTS_IN_BIND", DefaultEndpoint.eventsIn)

    @Option(help: "XPUB bind address subscribers connect to. Env: FERRY_EVENTS_OUT_BIND.")
    var subscribersBind = Env.string("FERRY_EVENTS_OUT_BIND", DefaultEndpoint.eventsOut)

    func run() async throws {
        let logger = ServiceMain.logger("ferry.eventbus", level: common.level)
        let config = EventBusConfig(publishersBind: publishersBind, subscribersBind: subscribersBind)
        try await ServiceMain.run([EventBus.service(config, logger: logger)], logger: logger)
    }
}
