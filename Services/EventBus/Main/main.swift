import ArgumentParser
import FerryEventBus
import FerryService
import Logging
import ServiceLifecycle

@main
struct EventBusCommand: ServiceCommand {
    static let service = ServiceName.eventbus
    static let abstract = "The event stream: services publish to one address, users subscribe to another."

    struct Options: ServiceOptions {
        @OptionGroup var common: CommonOptions

        @Option(help: Topology.eventsIn.bindHelp("XSUB bind address publishers connect to."))
        var publishersBind = Topology.eventsIn.bindEndpoint

        @Option(help: Topology.eventsOut.bindHelp("XPUB bind address subscribers connect to."))
        var subscribersBind = Topology.eventsOut.bindEndpoint

        @Option(help: Topology.eventBusStatus.bindHelp("Status socket the probe asks."))
        var statusBind = Topology.eventBusStatus.bindEndpoint

        @Option(help: Settings.eventsOutAllow.help)
        var allow = Settings.eventsOutAllow.value
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        [EventBus.service(EventBusConfig(publishersBind: options.publishersBind, subscribersBind: options.subscribersBind,
                                         statusBind: options.statusBind,
                                         security: try options.common.transport(role: .eventbus, allowListFile: options.allow, logger: logger),
                                         subscribersCurve: options.common.eventsCurve), logger: logger)]
    }

    static func probe(_ options: Options) throws { try ProbeCommand.run(connectable(options.statusBind)) }
}
