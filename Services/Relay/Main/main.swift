import ArgumentParser
import FerryRelay
import FerryService
import FerryTrust
import Foundation
import Logging
import ServiceLifecycle

@main
struct RelayCommand: ServiceCommand {
    static let service = ServiceName.relay
    static let abstract = "A relay node: forwards the packets of sessions the broker opened on it."
    static let probeAbstract = "Exit 0 if the relay on this host is serving and welcomed by the broker (a healthcheck)."

    struct Options: ServiceOptions {
        @OptionGroup var common: CommonOptions

        @Option(help: Topology.relay.bindHelp("ROUTER bind address devices and other relays connect to."))
        var bind = Topology.relay.bindEndpoint

        @Option(help: "The address others reach this relay at; defaults to the bind address, or to this host's first non-loopback IPv4 address when the bind is a wildcard (a container's address). Env: FERRY_RELAY_ADVERTISE.")
        var advertise = Env.string("FERRY_RELAY_ADVERTISE", "")

        @Option(help: Topology.brokerControl.connectHelp("The broker's control endpoint."))
        var broker = Topology.brokerControl.connectEndpoint

        @Option(help: "Relay id; made on first start and kept in the data directory when not given. Env: FERRY_RELAY_ID.")
        var relayId = Env.string("FERRY_RELAY_ID", "")

        @Option(help: "Where the relay keeps its id. Env: FERRY_RELAY_DATA.")
        var dataDir = Env.string("FERRY_RELAY_DATA", "./run/relay")

        @Option(help: "Zone label used to prefer nearby relays. Env: FERRY_ZONE.")
        var zone = Env.string("FERRY_ZONE", "")

        @Option(help: "Heartbeat interval in milliseconds until the broker's welcome sets it. Env: FERRY_HEARTBEAT_MS.")
        var heartbeatMs = Env.int("FERRY_HEARTBEAT_MS", 1000)

        @Option(help: "On SIGTERM, how long open sessions may finish before the relay exits anyway. Env: FERRY_RELAY_DRAIN_MS.")
        var drainMs = Env.int("FERRY_RELAY_DRAIN_MS", 20_000)

        @Option(help: "With transport security on: the join token to enrol this relay's key with at the origin (ferry tokens create --kind relay; replicas share one); needed only until the origin knows the relay. Env: FERRY_JOIN_TOKEN.")
        var joinToken = Env.string("FERRY_JOIN_TOKEN", "")

        @Option(help: "A file holding the join token, read when --join-token is empty (default: the origin's standing relay token, on a shared host). Env: FERRY_JOIN_TOKEN_FILE.")
        var joinTokenFile = Env.string("FERRY_JOIN_TOKEN_FILE", Env.string("FERRY_ORIGIN_DATA", "./run/origin") + "/join-tokens/relay.token")

        /// The relay's transport security: its own key pair from `relay.keys`, made on first start.
        func security(logger: Logger?) throws -> (TransportSecurity, DeviceKeys?) {
            let security = try common.transport(role: nil, logger: logger)
            guard security.isOn else { return (security, nil) }
            let keys = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: dataDir), fileName: "relay.keys")
            return (security.presenting(keys.transportKeyPair), keys)
        }
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        let (security, keys) = try options.security(logger: logger)
        let given = options.joinToken, file = options.joinTokenFile
        return [Relay.service(RelayConfig(
            bind: options.bind, advertise: options.advertise.isEmpty ? advertised(options.bind) : options.advertise,
            broker: options.broker, eventsIn: options.common.eventsIn,
            relayId: try Relay.identity(given: options.relayId.isEmpty ? nil : options.relayId, dataDirectory: options.dataDir),
            zone: options.zone.isEmpty ? nil : options.zone, heartbeatMilliseconds: options.heartbeatMs,
            drainMilliseconds: options.drainMs, security: security, origin: security.registry, keys: keys,
            joinToken: { given.isEmpty ? StoredSecret.read(at: URL(fileURLWithPath: file)) : given }), logger: logger)]
    }

    static func probe(_ options: Options) throws {
        let (security, _) = try options.security(logger: nil)
        try ProbeCommand.run(connectable(options.bind), security: security, serverKey: security.own?.publicKey, require: ProbeCommand.welcomed)
    }
}
