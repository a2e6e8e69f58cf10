/// Every configuration setting besides the socket endpoints (those are `Topology`'s): its
/// variable, default and meaning, once. docs/configuration.md lists each with its default.
public enum Settings {
    public static let originHost = Setting<String>("FERRY_ORIGIN_HOST", default: "127.0.0.1",
                                                    "Address the origin listens on.")
    public static let originPort = Setting<Int>("FERRY_ORIGIN_PORT", default: 7080,
                                                    "Port the origin listens on.")
    public static let originUrl = Setting<String>("FERRY_ORIGIN_URL", default: "",
                                                    "The origin's public base URL, which requests name as their server (where fulfilments go); empty: http://HOST:PORT.")
    public static let originData = Setting<String>("FERRY_ORIGIN_DATA", default: "./run/origin",
                                                    "Where the origin keeps content, manifests, the fulfilment records, the registry and the standing join tokens.")
    public static let chunkSize = Setting<Int>("FERRY_CHUNK_SIZE", default: 256 << 10,
                                                    "Chunk size in bytes for new content.")
    public static let packetSize = Setting<Int>("FERRY_PACKET_SIZE", default: 64 << 10,
                                                    "Packet size in bytes for new content.")
    public static let operatorToken = Setting<String>("FERRY_OPERATOR_TOKEN", default: "",
                                                    "The operator's bearer token (at least 16 characters) for publishing, withdrawing and the fleet's records.")
    public static let joinTokenDir = Setting<String>("FERRY_JOIN_TOKEN_DIR", default: "",
                                                    "Where the standing join tokens (device.token, relay.token: reusable, for replicas) are written on first start; empty: <data-dir>/join-tokens.")
    public static let relayJoinTokenDir = Setting<String>("FERRY_RELAY_JOIN_TOKEN_DIR", default: "",
                                                         "Where relay.token is written instead, so relays and devices can be given one token each (separate volumes); empty: with device.token.")
    public static let reporterKey = Setting<String>("FERRY_REPORTER_KEY", default: "",
                                                    "The reporter's Ed25519 public key (base64) or a file holding it; fulfilments it didn't sign are refused. Empty: the fleet's public/reporter-signing.key with transport keys, else ./run/reporter/reporter-signing.pub.")
    public static let addressPool = Setting<String>("FERRY_ADDRESS_POOL", default: "100.96.0.0/12",
                                                    "IPv4 block overlay addresses are allocated from.")
    public static let windowPackets = Setting<Int>("FERRY_WINDOW_PACKETS", default: 32,
                                                    "Packets a sender may have in flight per session.")
    public static let heartbeatMs = Setting<Int>("FERRY_HEARTBEAT_MS", default: 1000,
                                                    "Heartbeat interval in milliseconds; the broker drops a party silent for 5, and tells agents and relays its own in its welcome.")
    public static let sessionRate = Setting<String>("FERRY_SESSION_RATE", default: "1G",
                                                    "Payload bytes a second each session may go through its relay (K, M, G suffixes; 0 is no limit).")
    public static let intakeAllow = Setting<String>("FERRY_INTAKE_ALLOW", default: "",
                                                    "With transport security on: a file of servers' CURVE public keys let in besides the fleet's, one `<Z85 key> <name>` a line.")
    public static let eventsOutAllow = Setting<String>("FERRY_EVENTS_OUT_ALLOW", default: "",
                                                    "With FERRY_EVENTS_OUT_CURVE on: a file of subscribers' CURVE public keys let in besides the fleet's, one `<Z85 key> <name>` a line.")
    public static let ledgerPath = Setting<String>("FERRY_LEDGER_PATH", default: "./run/reporter/ledger.sqlite",
                                                    "SQLite ledger file.")
    public static let verifyWaitMs = Setting<Int>("FERRY_VERIFY_WAIT_MS", default: 15_000,
                                                    "Milliseconds a completion waits for the broker's closing record.")
    public static let ledgerRetentionDays = Setting<Int>("FERRY_LEDGER_RETENTION_DAYS", default: 90,
                                                    "Days acknowledged fulfilments stay in the ledger (0 keeps them forever).")
    public static let reporterSigningKey = Setting<String>("FERRY_REPORTER_SIGNING_KEY", default: "",
                                                    "Without transport keys: the Ed25519 key file deliveries are signed with (made on first start; its public half is written beside it as .pub, for the origin's --reporter-key); empty: reporter-signing.key beside the ledger. With keys the fleet's reporter-signing key is used.")
    public static let deviceId = Setting<String>("FERRY_DEVICE_ID", default: "",
                                                    "Device id; made on first start and kept in the data directory when not given.")
    public static let agentData = Setting<String>("FERRY_AGENT_DATA", default: "./run/agent",
                                                    "Where the device keeps its id, keys and content store.")
    public static let agentOutputDir = Setting<String>("FERRY_AGENT_OUTPUT_DIR", default: "",
                                                    "The only directory `ferry get --output` may write into (relative outputs are taken from it); empty: <data dir>/downloads.")
    public static let zone = Setting<String>("FERRY_ZONE", default: "",
                                                    "Zone label used to prefer nearby peers and relays.")
    public static let serving = Setting<Bool>("FERRY_SERVING", default: true,
                                                    "Serve held content to other devices (true/false).")
    public static let announceMs = Setting<Int>("FERRY_ANNOUNCE_MS", default: 2000,
                                                    "Holdings announcement interval in milliseconds.")
    public static let progressMs = Setting<Int>("FERRY_PROGRESS_MS", default: 500,
                                                    "Announcement interval in milliseconds while the device is getting content (the swarm plan judges chains by it); 0 keeps FERRY_ANNOUNCE_MS.")
    public static let lagChunks = Setting<Int>("FERRY_LAG_CHUNKS", default: 8,
                                                    "The matcher takes a hop of a crowd's chain for lagging when the device behind is at least this many chunks behind its upstream (and gains at under FERRY_LAG_PERCENT of its pace), two announcements running; 1-1000000.")
    public static let lagPercent = Setting<Int>("FERRY_LAG_PERCENT", default: 50,
                                                    "...and gains chunks at under this percent of its upstream's pace; 1-99.")
    public static let stripes = Setting<Int>("FERRY_STRIPES", default: 4,
                                                    "The most devices that send one request at once: with two or more holders of the whole content sparing an upload, the matcher cuts the content into that many stripes (at most), one from each; 1 keeps one source per request; 1-16.")
    public static let originPublicKey = Setting<String>("FERRY_ORIGIN_PUBLIC_KEY", default: "",
                                                    "The origin's manifest-signing public key (base64 Ed25519, from GET /v1/origin-key); manifests not signed by it are refused.")
    public static let uploadRate = Setting<String>("FERRY_UPLOAD_RATE", default: "0",
                                                    "Upload rate cap, bytes a second for all sessions together (K, M, G suffixes; 0 is none).")
    public static let storeQuota = Setting<String>("FERRY_STORE_QUOTA", default: "0",
                                                    "Content store quota (K, M, G suffixes; 0 is none); least recently used content is evicted.")
    public static let planDeadlineMs = Setting<Int>("FERRY_PLAN_DEADLINE_MS", default: 20_000,
                                                    "Milliseconds to wait for a plan from Ferry before fetching from the origin directly.")
    public static let joinToken = Setting<String>("FERRY_JOIN_TOKEN", default: "",
                                                    "The join token to enrol this device's or relay's key with at the origin (ferry tokens create --kind device|relay; replicas share one); needed only until the origin knows it.")
    public static let deviceJoinTokenFile = Setting<String>("FERRY_JOIN_TOKEN_FILE", default: originData.value + "/join-tokens/device.token",
                                                    "A file holding the join token, read when --join-token is empty (default: the origin's standing device token, on a shared host).")
    public static let relayAdvertise = Setting<String>("FERRY_RELAY_ADVERTISE", default: "",
                                                    "The address others reach this relay at; defaults to the bind address, or to this host's first non-loopback IPv4 address when the bind is a wildcard (a container's address).")
    public static let relayId = Setting<String>("FERRY_RELAY_ID", default: "",
                                                    "Relay id; made on first start and kept in the data directory when not given.")
    public static let relayData = Setting<String>("FERRY_RELAY_DATA", default: "./run/relay",
                                                    "Where the relay keeps its id and keys.")
    public static let relayForwardsFor = Setting<String>("FERRY_RELAY_FORWARDS_FOR", default: "",
                                                    "A device id: this relay runs on that device's host as its forwarding endpoint, carrying only the sessions that device sends (the device names it with --forwarder). Empty: a fleet relay.")
    public static let forwarder = Setting<String>("FERRY_FORWARDER", default: "",
                                                    "The id of the relay on this device's host that forwards what it sends (one started with --forwards-for this device); empty: sessions go through the fleet's relays.")
    public static let forwardBind = Setting<String>("FERRY_FORWARD_BIND", default: "",
                                                    "Opt in to forwarding: the agent runs this device's relay itself, bound here (a tcp:// address other devices reach), carrying only the sessions this device sends; its sending links reach it in-process, without CURVE. The relay keeps its id and keys under the agent's data directory (forwarding/) and enrols with a relay join token (--forward-join-token-file). Empty: no forwarding, or a separate relay named with --forwarder.")
    public static let forwardAdvertise = Setting<String>("FERRY_FORWARD_ADVERTISE", default: "",
                                                    "With --forward-bind: the address other devices reach this device's relay at; defaults as a relay's --advertise does.")
    public static let forwardJoinTokenFile = Setting<String>("FERRY_FORWARD_JOIN_TOKEN_FILE", default: originData.value + "/join-tokens/relay.token",
                                                    "With --forward-bind: a file holding the relay join token the device's relay enrols its key with (ferry tokens create --kind relay); read until the origin knows the relay.")
    public static let relayLocalBind = Setting<String>("FERRY_RELAY_LOCAL_BIND", default: "",
                                                    "With --forwards-for: a second endpoint, one only that device reaches (ipc://PATH in a directory only its user can enter, or tcp://127.0.0.1:PORT or an abstract ipc://@NAME in a network namespace the two alone share), where its sending links attach without CURVE; the packets are sealed and the hop never leaves the host. Empty: none.")
    public static let forwarderLocal = Setting<String>("FERRY_FORWARDER_LOCAL", default: "",
                                                    "The --local-bind endpoint of this device's forwarding relay (--forwarder): its sending links attach there without CURVE instead of over the network. Empty: through the relay's network endpoint.")
    public static let relayDrainMs = Setting<Int>("FERRY_RELAY_DRAIN_MS", default: 20_000,
                                                    "On SIGTERM, how long open sessions may finish before the relay exits anyway.")
    public static let relayJoinTokenFile = Setting<String>("FERRY_JOIN_TOKEN_FILE", default: originData.value + "/join-tokens/relay.token",
                                                    "A file holding the join token, read when --join-token is empty (default: the origin's standing relay token, on a shared host).")
    public static let logLevel = Setting<String>("FERRY_LOG_LEVEL", default: "info",
                                                    "Log level: trace, debug, info, notice, warning, error or critical.")
    public static let metricsBind = Setting<String>("FERRY_METRICS_BIND", default: "",
                                                    "host:port serving Prometheus metrics at /metrics, or off; empty means the service's own default port on 127.0.0.1.")
    public static let transportKeys = Setting<String>("FERRY_TRANSPORT_KEYS", default: "",
                                                    "The fleet's transport keys (made by `ferry keys fleet DIR`): CurveZMQ on every socket between Ferry processes. Empty: plain TCP.")
    public static let keyRegistry = Setting<String>("FERRY_KEY_REGISTRY", default: Topology.origin.connectEndpoint,
                                                    "Where a service asks whether a device's or relay's key is enrolled: the origin., else FERRY_ORIGIN_URL.")
    public static let eventsOutCurve = Setting<Bool>("FERRY_EVENTS_OUT_CURVE", default: false,
                                                    "Whether the event bus's subscribers must connect with CURVE (a key of the fleet's or on the bus's allow list); off: the stream is readable by whoever reaches its address.")

    /// Every one, for the docs test.
    public static let all: [any DescribedSetting] = [
        originHost,
        originPort,
        originUrl,
        originData,
        chunkSize,
        packetSize,
        operatorToken,
        joinTokenDir,
        relayJoinTokenDir,
        reporterKey,
        addressPool,
        windowPackets,
        heartbeatMs,
        sessionRate,
        intakeAllow,
        eventsOutAllow,
        ledgerPath,
        verifyWaitMs,
        ledgerRetentionDays,
        reporterSigningKey,
        deviceId,
        agentData,
        agentOutputDir,
        zone,
        serving,
        announceMs,
        progressMs,
        lagChunks,
        lagPercent,
        stripes,
        originPublicKey,
        uploadRate,
        storeQuota,
        planDeadlineMs,
        joinToken,
        deviceJoinTokenFile,
        relayAdvertise,
        relayId,
        relayData,
        relayForwardsFor,
        forwarder,
        forwardBind,
        forwardAdvertise,
        forwardJoinTokenFile,
        relayLocalBind,
        forwarderLocal,
        relayDrainMs,
        relayJoinTokenFile,
        logLevel,
        metricsBind,
        transportKeys,
        keyRegistry,
        eventsOutCurve,
    ]
}
