import ArgumentParser
import FerryAgent
import FerryProtocol
import FerryService
import Logging
import ServiceLifecycle

@main
struct AgentCommand: ServiceCommand {
    static let service = ServiceName.agent
    static let abstract = "The device agent: gets content from peers through relays, verifies it, and serves what it holds."
    static let probeAbstract = "Exit 0 if the agent on this host is serving and welcomed by the broker (a healthcheck)."

    struct Options: ServiceOptions {
        @OptionGroup var common: CommonOptions

        @Option(help: "Device id; made on first start and kept in the data directory when not given. Env: FERRY_DEVICE_ID.")
        var deviceId = Env.string("FERRY_DEVICE_ID", "")

        @Option(help: "Where the device keeps its id and content store. Env: FERRY_AGENT_DATA.")
        var dataDir = Env.string("FERRY_AGENT_DATA", "./run/agent")

        @Option(help: "The only directory `ferry get --output` may write into (relative outputs are taken from it); empty: <data dir>/downloads. Env: FERRY_AGENT_OUTPUT_DIR.")
        var outputDir = Env.string("FERRY_AGENT_OUTPUT_DIR", "")

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

        @Option(help: "Zone label used to prefer nearby peers and relays. Env: FERRY_ZONE.")
        var zone = Env.string("FERRY_ZONE", "")

        @Option(help: "Serve held content to other devices (true/false). Env: FERRY_SERVING.")
        var serving = Env.bool("FERRY_SERVING", true)

        @Option(help: "Holdings announcement interval in milliseconds. Env: FERRY_ANNOUNCE_MS.")
        var announceMs = Env.int("FERRY_ANNOUNCE_MS", 2000)

        @Option(help: "Heartbeat interval in milliseconds. Env: FERRY_HEARTBEAT_MS.")
        var heartbeatMs = Env.int("FERRY_HEARTBEAT_MS", 1000)

        @Option(help: "The origin's manifest-signing public key (base64 Ed25519, from GET /v1/origin-key); manifests not signed by it are refused. Env: FERRY_ORIGIN_PUBLIC_KEY.")
        var originPublicKey = Env.string("FERRY_ORIGIN_PUBLIC_KEY", "")

        @Option(help: "Upload rate cap, bytes a second for all sessions together (K, M, G suffixes; 0 is none). Env: FERRY_UPLOAD_RATE.")
        var uploadRate = Env.string("FERRY_UPLOAD_RATE", "0")

        @Option(help: "Content store quota (K, M, G suffixes; 0 is none); least recently used content is evicted. Env: FERRY_STORE_QUOTA.")
        var storeQuota = Env.string("FERRY_STORE_QUOTA", "0")

        @Option(help: "Milliseconds to wait for a plan from Ferry before fetching from the origin directly. Env: FERRY_PLAN_DEADLINE_MS.")
        var planDeadlineMs = Env.int("FERRY_PLAN_DEADLINE_MS", 20_000)

        @Option(help: "The join token to enrol this device with at the origin (ferry tokens create --kind device); needed only until the origin knows the device. Env: FERRY_JOIN_TOKEN.")
        var joinToken = Env.string("FERRY_JOIN_TOKEN", "")

        @Option(help: "A file holding the join token, read when --join-token is empty (default: the origin's standing device token, on a shared host). Env: FERRY_JOIN_TOKEN_FILE.")
        var joinTokenFile = Env.string("FERRY_JOIN_TOKEN_FILE", Env.string("FERRY_ORIGIN_DATA", "./run/origin") + "/join-tokens/device.token")

        func validate() throws {
            guard ByteSize.parse(uploadRate) != nil else { throw ValidationError("--upload-rate: not a size: \(uploadRate)") }
            guard ByteSize.parse(storeQuota) != nil else { throw ValidationError("--store-quota: not a size: \(storeQuota)") }
            let range = HoldingsAnnouncement.intervalRange
            guard range.contains(announceMs) else {
                throw ValidationError("--announce-ms must be \(range.lowerBound)...\(range.upperBound) (the matcher refuses other intervals)")
            }
        }
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        let security = try options.common.transport(role: nil, logger: logger)
        // The fleet's keys carry the origin's signing key: configuration, never fetched.
        let originKey = options.originPublicKey.isEmpty ? security.fleet?.originSigningKey : options.originPublicKey
        return [try Agent.service(AgentConfig(
            deviceId: try AgentConfig.identity(given: options.deviceId.isEmpty ? nil : options.deviceId, dataDirectory: options.dataDir),
            dataDirectory: options.dataDir, outputDirectory: options.outputDir.isEmpty ? nil : options.outputDir, originURL: options.origin,
            broker: options.broker, holdings: options.holdings, reporter: options.reporter, eventsIn: options.common.eventsIn,
            controlBind: options.control, zone: options.zone.isEmpty ? nil : options.zone, serving: options.serving,
            announceMilliseconds: options.announceMs, heartbeatMilliseconds: options.heartbeatMs, planDeadlineMilliseconds: options.planDeadlineMs,
            uploadBytesPerSecond: ByteSize.parse(options.uploadRate) ?? 0, storeQuotaBytes: ByteSize.parse(options.storeQuota) ?? 0,
            originPublicKey: originKey, joinToken: options.joinToken.isEmpty ? nil : options.joinToken,
            joinTokenFile: options.joinTokenFile.isEmpty ? nil : options.joinTokenFile, security: security), logger: logger)]
    }

    static func probe(_ options: Options) throws { try ProbeCommand.run(connectable(options.control), require: ProbeCommand.welcomed) }
}
