import ArgumentParser
import FerryBroker
import FerryService

@main
struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-broker",
        abstract: "Connection brokering: sessions, overlay addresses, relay paths, and the dialog with agents and relays.",
        subcommands: [Run.self, Probe.self], defaultSubcommand: Run.self)

    struct Options: ParsableArguments {
        @OptionGroup var common: CommonOptions

        @Option(help: Topology.broker.bindHelp("PULL bind address the matcher pushes decisions to."))
        var bind = Topology.broker.bindEndpoint

        @Option(help: Topology.brokerControl.bindHelp("ROUTER bind address agents and relays connect to."))
        var controlBind = Topology.brokerControl.bindEndpoint

        @Option(help: Topology.reporter.connectHelp("The reporter's PULL endpoint."))
        var reporter = Topology.reporter.connectEndpoint

        @Option(help: Topology.matcher.connectHelp("The matcher's PULL endpoint, told of senders that delivered nothing."))
        var matcher = Topology.matcher.connectEndpoint

        @Option(help: "IPv4 block overlay addresses are allocated from. Env: FERRY_ADDRESS_POOL.")
        var addressPool = Env.string("FERRY_ADDRESS_POOL", "100.96.0.0/12")

        @Option(help: "Packets a sender may have in flight per session. Env: FERRY_WINDOW_PACKETS.")
        var window = Env.int("FERRY_WINDOW_PACKETS", 32)

        @Option(help: "Heartbeat interval in milliseconds; a party silent for 5 is dropped. Env: FERRY_HEARTBEAT_MS.")
        var heartbeatMs = Env.int("FERRY_HEARTBEAT_MS", 1000)

        @Option(help: "Payload bytes a second each session may go through its relay (K, M, G suffixes; 0 is no limit). Env: FERRY_SESSION_RATE.")
        var sessionRate = Env.string("FERRY_SESSION_RATE", "1G")
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the broker (the default).")
        @OptionGroup var options: Options

        func validate() throws {
            guard ByteSize.parse(options.sessionRate) != nil else { throw ValidationError("--session-rate: not a size: \(options.sessionRate)") }
        }

        func run() async throws {
            let logger = ServiceMain.logger("ferry.broker", level: options.common.level)
            let config = BrokerConfig(bind: options.bind, controlBind: options.controlBind, reporter: options.reporter, matcher: options.matcher,
                                      eventsIn: options.common.eventsIn, addressPool: options.addressPool, window: options.window,
                                      heartbeatMilliseconds: options.heartbeatMs,
                                      sessionBytesPerSecond: ByteSize.parse(options.sessionRate) ?? 0,
                                      security: try options.common.transport(role: .broker, logger: logger))
            try await ServiceMain.run([try Broker.service(config, logger: logger)], logger: logger,
                                     metricsBind: options.common.metrics(for: .broker))
        }
    }

    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exit 0 if the broker on this host is serving (a healthcheck).")
        @OptionGroup var options: Options
        func run() throws {
            let security = try options.common.transport(role: .broker, logger: nil)
            try ProbeCommand.run(connectable(options.controlBind), security: security, serverKey: security.fleet?.publicKeys[.broker])
        }
    }
}
