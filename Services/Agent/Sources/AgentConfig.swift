import FerryProtocol
import FerryService
import Foundation

public struct AgentConfig: Sendable {
    public var deviceId: DeviceID
    public var dataDirectory: String
    /// The only directory `ferry get --output` writes into.
    public var outputDirectory: String
    public var originURL: String
    public var broker: String
    public var holdings: String
    public var reporter: String
    public var eventsIn: String
    public var controlBind: String
    public var zone: String?
    /// False: this device never sends content to others (it still downloads).
    public var serving: Bool
    public var announceMilliseconds: Int
    /// While getting content: progress is what the swarm plan judges a chain's hops by, and it
    /// needs a few announcements to see a hop lag. 0: `announceMilliseconds` throughout.
    public var progressMilliseconds: Int
    public var heartbeatMilliseconds: Int
    /// How long a request may go without any plan from Ferry before the agent fetches from the
    /// origin itself, so a download is never worse than without Ferry.
    public var planDeadlineMilliseconds: Int
    /// Bytes a second this device sends to others, all sessions together; 0 is no cap.
    public var uploadBytesPerSecond: UInt64
    /// Bytes the content store may hold; least recently used content is evicted to make room,
    /// never content being sent or downloaded. 0 is no quota.
    public var storeQuotaBytes: UInt64
    /// The origin's manifest-signing key (base64 Ed25519). When set, a manifest that isn't
    /// signed by it is refused before any of its chunk hashes is trusted.
    public var originPublicKey: String?
    /// The join token to enrol with, or the file that holds it (read at each attempt until the
    /// origin knows the device, so it may appear or change while the agent runs; never after).
    public var joinToken: String?
    public var joinTokenFile: String?
    /// The fleet's keys: the agent connects to every service with CURVE, presenting its own X25519 key.
    public var security: TransportSecurity
    /// The relay on this device's host that forwards what it sends (opt-in, reachable devices).
    public var forwarder: RelayID?
    /// That relay's local endpoint: sending links attach there without CURVE.
    public var forwarderLocal: String?

    public init(deviceId: DeviceID, dataDirectory: String, outputDirectory: String? = nil, originURL: String, broker: String, holdings: String, reporter: String,
                eventsIn: String, controlBind: String, zone: String?, serving: Bool, announceMilliseconds: Int,
                progressMilliseconds: Int = 0, heartbeatMilliseconds: Int, planDeadlineMilliseconds: Int, uploadBytesPerSecond: UInt64 = 0, storeQuotaBytes: UInt64 = 0,
                originPublicKey: String? = nil, joinToken: String? = nil, joinTokenFile: String? = nil,
                security: TransportSecurity = .off, forwarder: RelayID? = nil, forwarderLocal: String? = nil) {
        self.forwarder = forwarder
        self.forwarderLocal = forwarderLocal
        self.security = security
        self.originPublicKey = originPublicKey
        self.joinToken = joinToken
        self.joinTokenFile = joinTokenFile
        self.uploadBytesPerSecond = uploadBytesPerSecond
        self.storeQuotaBytes = storeQuotaBytes
        self.deviceId = deviceId
        self.dataDirectory = dataDirectory
        self.outputDirectory = outputDirectory ?? dataDirectory + "/downloads"
        self.originURL = originURL
        self.broker = broker
        self.holdings = holdings
        self.reporter = reporter
        self.eventsIn = eventsIn
        self.controlBind = controlBind
        self.zone = zone
        self.serving = serving
        self.announceMilliseconds = announceMilliseconds
        self.progressMilliseconds = progressMilliseconds
        self.heartbeatMilliseconds = heartbeatMilliseconds
        self.planDeadlineMilliseconds = planDeadlineMilliseconds
    }

    /// The device id: given, or made on first start and kept in the data directory, so a
    /// scaled agent needs no configuration of its own.
    public static func identity(given: String?, dataDirectory: String) throws -> DeviceID {
        if let given { return try DeviceID(given) }
        let directory = URL(fileURLWithPath: dataDirectory)
        let file = directory.appendingPathComponent("device.id")
        if let saved = try? String(contentsOf: file, encoding: .utf8),
           let id = try? DeviceID(saved.trimmingCharacters(in: .whitespacesAndNewlines)) {
            return id
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let id = DeviceID.random(prefix: "dev")
        try id.rawValue.write(to: file, atomically: true, encoding: .utf8)
        return id
    }
}
