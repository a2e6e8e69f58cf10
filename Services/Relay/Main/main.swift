import ArgumentParser
import FerryRelay
import FerryService

@main
struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-relay",
        abstract: "A relay node: forwards the packets of sessions the broker opened on it.")

    @OptionGroup var common: CommonOptions

    @Option(help: "ROUTER bind address devices and other relays connect to. Env: FERRY_RELAY_BIND.")
    var bind = Env.string("FERRY_RELAY_BIND", DefaultEndpoint.relay)

    @Option(help: "The address others reach this relay at; defaults to the bind address. Env: FERRY_RELAY_ADVERTISE.")
    var advertise = Env.string("FERRY_RELAY_ADVERTISE", "")

    @Option(help: "The broker's control endpoint. Env: FERRY_BROKER_CONTROL_ENDPOINT.")
    var broker = Env.string("FERRY_BROKER_CONTROL_ENDPOINT", DefaultEndpoint.brokerControl)

    @Option(help: "Relay id; made on first start and kept in the data directory when not given. Env: FERRY_RELAY_ID.")
    var relayId = Env.string("FERRY_RELAY_ID", "")

    @Option(help: "Where the relay keeps its id. Env: FERRY_RELAY_DATA.")
    var dataDir = Env.string("FERRY_RELAY_DATA", "./run/relay")

    @Option(help: "Zone label used to prefer nearby relays. Env: FERRY_ZONE.")
    var zone = Env.string("FERRY_ZONE", "")

    @Option(help: "Heartbeat interval in milliseconds. Env: FERRY_HEARTBEAT_MS.")
    var heartbeatMs = Env.int("FERRY_HEARTBEAT_MS", 1000)

    func run() async throws {
        let logger = ServiceMain.logger("ferry.relay", level: common.level)
        let config = RelayConfig(bind: bind, advertise: advertise.isEmpty ? connectable(bind) : advertise, broker: broker, eventsIn: common.eventsIn,
                                 relayId: try Relay.identity(given: relayId.isEmpty ? nil : relayId, dataDirectory: dataDir), zone: zone.isEmpty ? nil : zone,
                                 heartbeatMilliseconds: heartbeatMs)
        try await ServiceMain.run([Relay.service(config, logger: logger)], logger: logger)
    }
}
