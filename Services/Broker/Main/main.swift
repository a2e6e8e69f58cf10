import ArgumentParser
import FerryBroker
import FerryService
import Logging
import ServiceLifecycle

@main
struct BrokerCommand: ServiceCommand {
    static let service = ServiceName.broker
    static let abstract = "Connection brokering: sessions, overlay addresses, relay paths, and the dialog with agents and relays."

    struct Options: ServiceOptions {
        @OptionGroup var common: CommonOptions

        @Option(help: Topology.broker.bindHelp("PULL bind address the matcher pushes decisions to."))
        var bind = Topology.broker.bindEndpoint

        @Option(help: Topology.brokerControl.bindHelp("ROUTER bind address agents and relays connect to."))
        var controlBind = Topology.brokerControl.bindEndpoint

        @Option(help: Topology.reporter.connectHelp("The reporter's PULL endpoint."))
        var reporter = Topology.reporter.connectEndpoint

        @Option(help: Topology.matcher.connectHelp("The matcher's PULL endpoint, told of senders that delivered nothing."))
        var matcher = Topology.matcher.connectEndpoint

        @Option(help: Settings.addressPool.help)
        var addressPool = Settings.addressPool.value

        @Option(help: Settings.windowPackets.help)
        var window = Settings.windowPackets.value

        @Option(help: Settings.heartbeatMs.help("Heartbeat interval in milliseconds; a party silent for 5 is dropped."))
        var heartbeatMs = Settings.heartbeatMs.value

        @Option(help: Settings.sessionRate.help)
        var sessionRate = Settings.sessionRate.value

        func validate() throws {
            guard ByteSize.parse(sessionRate) != nil else { throw ValidationError("--session-rate: not a size: \(sessionRate)") }
        }
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        [try Broker.service(BrokerConfig(bind: options.bind, controlBind: options.controlBind, reporter: options.reporter, matcher: options.matcher,
                                         eventsIn: options.common.eventsIn, addressPool: options.addressPool, window: options.window,
                                         heartbeatMilliseconds: options.heartbeatMs,
                                         sessionBytesPerSecond: ByteSize.parse(options.sessionRate) ?? 0,
                                         security: try options.common.transport(role: .broker, logger: logger)), logger: logger)]
    }

    static func probe(_ options: Options) throws {
        let security = try options.common.transport(role: .broker, logger: nil)
        try ProbeCommand.run(connectable(options.controlBind), security: security, serverKey: security.fleet?.publicKeys[.broker])
    }
}
