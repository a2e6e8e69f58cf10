import ArgumentParser
import FerryEventBus
import FerryService

@main
struct EventBusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-eventbus",
        abstract: "The event stream: services publish to one address, users subscribe to another.",
        subcommands: [Run.self, Probe.self], defaultSubcommand: Run.self)

    struct Options: ParsableArguments {
        @OptionGroup var common: CommonOptions

        @Option(help: Topology.eventsIn.bindHelp("XSUB bind address publishers connect to."))
        var publishersBind = Topology.eventsIn.bindEndpoint

        @Option(help: Topology.eventsOut.bindHelp("XPUB bind address subscribers connect to."))
        var subscribersBind = Topology.eventsOut.bindEndpoint

        @Option(help: Topology.eventBusStatus.bindHelp("Status socket the probe asks."))
        var statusBind = Topology.eventBusStatus.bindEndpoint

        @Option(help: "With FERRY_EVENTS_OUT_CURVE on: a file of subscribers' CURVE public keys let in besides the fleet's, one `<Z85 key> <name>` a line. Env: FERRY_EVENTS_OUT_ALLOW.")
        var allow = Env.string("FERRY_EVENTS_OUT_ALLOW", "")
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the event bus (the default).")
        @OptionGroup var options: Options

        func run() async throws {
            let logger = ServiceMain.logger("ferry.eventbus", level: options.common.level)
            let config = EventBusConfig(publishersBind: options.publishersBind, subscribersBind: options.subscribersBind,
                                        statusBind: options.statusBind,
                                        security: try options.common.transport(role: .eventbus, allowListFile: options.allow, logger: logger),
                                        subscribersCurve: options.common.eventsCurve)
            try await ServiceMain.run([EventBus.service(config, logger: logger)], logger: logger,
                                     metricsBind: options.common.metrics(for: .eventbus))
        }
    }

    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exit 0 if the event bus on this host is serving (a healthcheck).")
        @OptionGroup var options: Options
        func run() throws { try ProbeCommand.run(connectable(options.statusBind)) }
    }
}
