import ArgumentParser
import FerryAgent
import FerryProtocol
import FerryRelay
import FerryService
import FerryTrust
import Foundation
import Logging
import ServiceLifecycle

@main
struct AgentCommand: ServiceCommand {
    static let service = ServiceName.agent
    static let abstract = "The device agent: gets content from peers through relays, verifies it, and serves what it holds."
    static let probeAbstract = "Exit 0 if the agent on this host is serving and welcomed by the broker (a healthcheck)."

    struct Options: ServiceOptions {
        @OptionGroup var common: CommonOptions

        @Option(help: Settings.deviceId.help)
        var deviceId = Settings.deviceId.value

        @Option(help: Settings.agentData.help)
        var dataDir = Settings.agentData.value

        @Option(help: Settings.agentOutputDir.help)
        var outputDir = Settings.agentOutputDir.value

        @Option(help: Topology.origin.connectHelp("The origin's base URL."))
        var origin = Topology.origin.connectEndpoint

        @Option(help: Topology.brokerControl.connectHelp("The broker's control endpoint."))
        var broker = Topology.brokerControl.connectEndpoint

        @Option(help: Topology.holdings.connectHelp("The matcher's holdings endpoint."))
        var holdings = Topology.holdings.connectEndpoint

        @Option(help: Topology.reporter.connectHelp("The reporter's endpoint."))
        var reporter = Topology.reporter.connectEndpoint

        @Option(help: Topology.agentControl.bindHelp("Local control endpoint `ferry` connects to (loopback or ipc only)."))
        var control = Topology.agentControl.bindEndpoint

        @Option(help: Settings.zone.help)
        var zone = Settings.zone.value

        @Option(help: Settings.serving.help)
        var serving = Settings.serving.value

        @Option(help: Settings.forwarder.help)
        var forwarder = Settings.forwarder.value

        @Option(help: Settings.forwarderLocal.help)
        var forwarderLocal = Settings.forwarderLocal.value

        @Option(help: Settings.forwardBind.help)
        var forwardBind = Settings.forwardBind.value

        @Option(help: Settings.forwardAdvertise.help)
        var forwardAdvertise = Settings.forwardAdvertise.value

        @Option(help: Settings.forwardJoinTokenFile.help)
        var forwardJoinTokenFile = Settings.forwardJoinTokenFile.value

        @Option(help: Settings.announceMs.help)
        var announceMs = Settings.announceMs.value

        @Option(help: Settings.progressMs.help)
        var progressMs = Settings.progressMs.value

        @Option(help: Settings.heartbeatMs.help("Heartbeat interval in milliseconds."))
        var heartbeatMs = Settings.heartbeatMs.value

        @Option(help: Settings.originPublicKey.help)
        var originPublicKey = Settings.originPublicKey.value

        @Option(help: Settings.uploadRate.help)
        var uploadRate = Settings.uploadRate.value

        @Option(help: Settings.storeQuota.help)
        var storeQuota = Settings.storeQuota.value

        @Option(help: Settings.planDeadlineMs.help)
        var planDeadlineMs = Settings.planDeadlineMs.value

        @Option(help: Settings.joinToken.help("The join token to enrol this device with at the origin (ferry tokens create --kind device); needed only until the origin knows the device."))
        var joinToken = Settings.joinToken.value

        @Option(help: Settings.deviceJoinTokenFile.help)
        var joinTokenFile = Settings.deviceJoinTokenFile.value

        func validate() throws {
            guard ByteSize.parse(uploadRate) != nil else { throw ValidationError("--upload-rate: not a size: \(uploadRate)") }
            guard ByteSize.parse(storeQuota) != nil else { throw ValidationError("--store-quota: not a size: \(storeQuota)") }
            let range = HoldingsAnnouncement.intervalRange
            guard forwardBind.isEmpty || forwarder.isEmpty else {
                throw ValidationError("--forward-bind runs this device's own relay; --forwarder names a separate one: give one of them")
            }
            guard range.contains(announceMs) else {
                throw ValidationError("--announce-ms must be \(range.lowerBound)...\(range.upperBound) (the matcher refuses other intervals)")
            }
            guard progressMs == 0 || range.contains(progressMs) else {
                throw ValidationError("--progress-ms must be 0 or \(range.lowerBound)...\(range.upperBound) (the matcher refuses other intervals)")
            }
        }
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        let security = try options.common.transport(role: nil, logger: logger)
        // The fleet's keys carry the origin's signing key: configuration, never fetched.
        let originKey = options.originPublicKey.isEmpty ? security.fleet?.originSigningKey : options.originPublicKey
        return try Agent.services(AgentConfig(
            deviceId: try AgentConfig.identity(given: options.deviceId.isEmpty ? nil : options.deviceId, dataDirectory: options.dataDir),
            dataDirectory: options.dataDir, outputDirectory: options.outputDir.isEmpty ? nil : options.outputDir, originURL: options.origin,
            broker: options.broker, holdings: options.holdings, reporter: options.reporter, eventsIn: options.common.eventsIn,
            controlBind: options.control, zone: options.zone.isEmpty ? nil : options.zone, serving: options.serving,
            announceMilliseconds: options.announceMs, progressMilliseconds: options.progressMs, heartbeatMilliseconds: options.heartbeatMs, planDeadlineMilliseconds: options.planDeadlineMs,
            uploadBytesPerSecond: ByteSize.parse(options.uploadRate) ?? 0, storeQuotaBytes: ByteSize.parse(options.storeQuota) ?? 0,
            originPublicKey: originKey, joinToken: options.joinToken.isEmpty ? nil : options.joinToken,
            joinTokenFile: options.joinTokenFile.isEmpty ? nil : options.joinTokenFile, security: security,
            forwarder: options.forwarder.isEmpty ? nil : try RelayID(options.forwarder),
            forwarderLocal: options.forwarderLocal.isEmpty ? nil : options.forwarderLocal),
            forwarding: try forwarding(options, security: security), logger: logger)
    }

    /// With `--forward-bind`: the relay this device runs for what it sends, with its own id and
    /// key pair (a relay's, enrolled as a relay) kept under the agent's data directory.
    static func forwarding(_ options: Options, security: TransportSecurity) throws -> RelayConfig? {
        guard !options.forwardBind.isEmpty else { return nil }
        let directory = URL(fileURLWithPath: options.dataDir).appendingPathComponent("forwarding")
        let (relaySecurity, keys) = try Relay.transport(security, dataDirectory: directory.path)
        let file = URL(fileURLWithPath: options.forwardJoinTokenFile)
        return RelayConfig(
            bind: options.forwardBind, advertise: options.forwardAdvertise.isEmpty ? advertised(options.forwardBind) : options.forwardAdvertise,
            broker: options.broker, eventsIn: options.common.eventsIn,
            relayId: try Relay.identity(given: nil, dataDirectory: directory.path), zone: options.zone.isEmpty ? nil : options.zone,
            heartbeatMilliseconds: options.heartbeatMs, drainMilliseconds: Settings.relayDrainMs.value,
            security: relaySecurity, origin: security.registry, keys: keys,
            joinToken: { StoredSecret.read(at: file) })
    }

    static func probe(_ options: Options) throws { try ProbeCommand.run(connectable(options.control), require: ProbeCommand.welcomed) }
}
