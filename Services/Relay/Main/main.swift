import ArgumentParser
import FerryProtocol
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

        @Option(help: Settings.relayAdvertise.help)
        var advertise = Settings.relayAdvertise.value

        @Option(help: Topology.brokerControl.connectHelp("The broker's control endpoint."))
        var broker = Topology.brokerControl.connectEndpoint

        @Option(help: Settings.relayId.help)
        var relayId = Settings.relayId.value

        @Option(help: Settings.relayData.help)
        var dataDir = Settings.relayData.value

        @Option(help: Settings.zone.help("Zone label used to prefer nearby relays."))
        var zone = Settings.zone.value

        @Option(help: Settings.heartbeatMs.help("Heartbeat interval in milliseconds until the broker's welcome sets it."))
        var heartbeatMs = Settings.heartbeatMs.value

        @Option(help: Settings.relayForwardsFor.help)
        var forwardsFor = Settings.relayForwardsFor.value

        @Option(help: Settings.relayLocalBind.help)
        var localBind = Settings.relayLocalBind.value

        @Option(help: Settings.relayDrainMs.help)
        var drainMs = Settings.relayDrainMs.value

        @Option(help: Settings.joinToken.help("With transport security on: the join token to enrol this relay's key with at the origin (ferry tokens create --kind relay; replicas share one); needed only until the origin knows the relay."))
        var joinToken = Settings.joinToken.value

        @Option(help: Settings.relayJoinTokenFile.help)
        var joinTokenFile = Settings.relayJoinTokenFile.value

        /// The relay's transport security: its own key pair from `relay.keys`, made on first start.
        func security(logger: Logger?) throws -> (TransportSecurity, DeviceKeys?) {
            try Relay.transport(try common.transport(role: nil, logger: logger), dataDirectory: dataDir)
        }
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        let (security, keys) = try options.security(logger: logger)
        guard options.localBind.isEmpty || !options.forwardsFor.isEmpty else {
            throw ValidationError("--local-bind is for a device's own relay: give --forwards-for too")
        }
        let given = options.joinToken, file = options.joinTokenFile
        return [Relay.service(RelayConfig(
            bind: options.bind, advertise: options.advertise.isEmpty ? advertised(options.bind) : options.advertise,
            broker: options.broker, eventsIn: options.common.eventsIn,
            relayId: try Relay.identity(given: options.relayId.isEmpty ? nil : options.relayId, dataDirectory: options.dataDir),
            zone: options.zone.isEmpty ? nil : options.zone, heartbeatMilliseconds: options.heartbeatMs,
            drainMilliseconds: options.drainMs, security: security, origin: security.registry, keys: keys,
            joinToken: { given.isEmpty ? StoredSecret.read(at: URL(fileURLWithPath: file)) : given },
            forwardsFor: options.forwardsFor.isEmpty ? nil : try DeviceID(options.forwardsFor),
            localBind: options.localBind.isEmpty ? nil : options.localBind), logger: logger)]
    }

    static func probe(_ options: Options) throws {
        let (security, _) = try options.security(logger: nil)
        try ProbeCommand.run(connectable(options.bind), security: security, serverKey: security.own?.publicKey, require: ProbeCommand.welcomed)
    }
}
