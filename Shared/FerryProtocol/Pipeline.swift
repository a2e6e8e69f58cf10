import Foundation

// The request pipeline, all PUSH/PULL: server -> intake -> matcher -> broker.

/// Step (a): a server tells Ferry that a device asked it for content. Any server can send this
/// to intake's PULL socket; `server` is the base URL the fulfilment is delivered to.
public struct DownloadRequest: WireMessage {
    public static let kind = "download.request"

    public var requestId: RequestID
    public var deviceId: DeviceID
    public var content: ContentSummary
    public var server: String
    public var requestedAt: String?

    public init(requestId: RequestID, deviceId: DeviceID, content: ContentSummary, server: String, requestedAt: String? = nil) {
        self.requestId = requestId
        self.deviceId = deviceId
        self.content = content
        self.server = server
        self.requestedAt = requestedAt
    }

    public func validate() throws {
        try content.validate()
        guard let url = URL(string: server), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw WireError.invalid("server must be an http(s) base URL (got \(server.debugDescription.prefix(80)))")
        }
    }
}

/// The server withdrew content: no new sessions for it, and every device drops its copy.
/// Travels the same pipeline as requests (server -> intake -> matcher -> broker), so each stage
/// learns of it in order, and the broker tells the devices.
public struct ContentWithdrawn: WireMessage {
    public static let kind = "content.withdrawn"
    public var contentId: ContentID
    public var reason: String
    public init(contentId: ContentID, reason: String) {
        self.contentId = contentId
        self.reason = reason
    }
}

/// The operator revoked a device at the origin: from now on the matcher never offers it as a
/// source, and the broker drops it, ends its sessions and refuses its hellos. Travels the
/// request pipeline like `content.withdrawn`.
public struct DeviceRevocation: WireMessage {
    public static let kind = "device.revocation"
    public var deviceId: DeviceID
    public init(deviceId: DeviceID) { self.deviceId = deviceId }
}

/// What travels the request pipeline besides requests: news that intake, matcher and broker
/// each act on and pass on, in order with the requests.
public enum PipelineNotice: Sendable, Equatable {
    case withdrawn(ContentWithdrawn)
    case revoked(DeviceRevocation)

    /// Nil for anything else: a request, or input the stage's own decoder then refuses and counts.
    public init?(frames: [Data]) {
        guard frames.count == 3 else { return nil }
        switch String(decoding: frames[1], as: UTF8.self) {
        case ContentWithdrawn.kind:
            guard let withdrawal = try? ContentWithdrawn.decode(frames: frames) else { return nil }
            self = .withdrawn(withdrawal)
        case DeviceRevocation.kind:
            guard let revocation = try? DeviceRevocation.decode(frames: frames) else { return nil }
            self = .revoked(revocation)
        default:
            return nil
        }
    }

    public func frames() throws -> [Data] {
        switch self {
        case .withdrawn(let withdrawal): try withdrawal.frames()
        case .revoked(let revocation): try revocation.frames()
        }
    }
}

/// Intake's validated request, stamped with a trace id, on its way to matching.
public struct MatchRequest: WireMessage {
    public static let kind = "match.request"

    public var request: DownloadRequest
    public var traceId: String
    /// 1 for the first time intake saw this request id, more for retries of the same request.
    public var attempt: Int

    public init(request: DownloadRequest, traceId: String, attempt: Int) {
        self.request = request
        self.traceId = traceId
        self.attempt = attempt
    }

    public func validate() throws { try request.validate() }
}

/// Step (b)'s answer: which devices will send the content, or none (the origin serves it).
public struct MatchDecision: WireMessage {
    public static let kind = "match.decision"

    public var match: MatchRequest
    /// Devices chosen to send, best first; empty means the origin serves the request.
    public var sources: [DeviceID]
    /// Why the origin serves it, when `sources` is empty.
    public var reason: String?
    /// Set when several devices send at once: the content is cut into `stripes.count` stripes
    /// (`Stripe`), and stripe i comes from the first device of `stripes[i]` that can send, the
    /// rest being where a new path for it may come from. `sources` then names them all.
    public var stripes: [[DeviceID]]?

    public init(match: MatchRequest, sources: [DeviceID], reason: String? = nil, stripes: [[DeviceID]]? = nil) {
        self.match = match
        self.sources = sources
        self.reason = reason
        self.stripes = stripes
    }

    public func validate() throws {
        try match.validate()
        guard let stripes else { return }
        guard (2...Stripe.maxCount).contains(stripes.count) else { throw WireError.invalid("stripes must number 2...\(Stripe.maxCount)") }
        guard stripes.allSatisfy({ !$0.isEmpty }) else { throw WireError.invalid("every stripe needs a source") }
        guard stripes.count <= match.request.content.chunkCount else { throw WireError.invalid("more stripes than chunks") }
    }
}

/// The broker tells the matcher that a session's sender delivered nothing: its receiver saw no
/// data within `patienceMilliseconds` of joining the link. A device that announces content and
/// then sends nothing would otherwise be chosen first every time; after `SenderSilent.limit` of
/// these the matcher stops choosing it for `exclusionMilliseconds`.
public struct SenderSilent: WireMessage {
    public static let kind = "sender.silent"
    public static let patienceMilliseconds = 5_000
    public static let limit = 3
    public static let exclusionMilliseconds = 600_000
    /// The `session.finished` reason a receiver gives for such a session.
    public static let reason = FinishReason.senderSilent.rawValue

    public var deviceId: DeviceID
    public var contentId: ContentID
    public var sessionId: SessionID
    public var requestId: RequestID

    public init(deviceId: DeviceID, contentId: ContentID, sessionId: SessionID, requestId: RequestID) {
        self.deviceId = deviceId
        self.contentId = contentId
        self.sessionId = sessionId
        self.requestId = requestId
    }
}

/// The swarm plan moved a device that is still getting content: from now on it gets the rest
/// from `sources` (best first; empty: the origin). The matcher sends it when a hop of a swarm's
/// chain lags (docs/architecture.md, the swarm plan): the member that lags, or the one two
/// followers lagged behind, goes to the chain's tail, and whoever it fed takes its place. The
/// broker re-paths the device's running session; with none running it has nothing to change.
public struct SourceChange: WireMessage {
    public static let kind = "source.change"

    public var deviceId: DeviceID
    public var contentId: ContentID
    public var sources: [DeviceID]
    /// The plan's reason, one of `Reason`: the broker passes it on as the new path's reason.
    public var reason: String

    /// `fell-behind`: the device lagged behind its upstream, which fed it well ahead of it;
    /// `slow-uplink`: two devices in turn lagged behind this one; `upstream-moved`: the device
    /// ahead of this one was moved for either reason; `upstream-lost`: the device ahead of this
    /// one stopped announcing (or was revoked) and this one stopped gaining chunks.
    public enum Reason: String, CaseIterable, Sendable {
        case fellBehind = "fell-behind"
        case slowUplink = "slow-uplink"
        case upstreamMoved = "upstream-moved"
        case upstreamLost = "upstream-lost"
    }

    public init(deviceId: DeviceID, contentId: ContentID, sources: [DeviceID], reason: Reason) {
        self.deviceId = deviceId
        self.contentId = contentId
        self.sources = sources
        self.reason = reason.rawValue
    }

    public func validate() throws {
        guard Reason(rawValue: reason) != nil else { throw WireError.invalid("source.change reason \(reason.debugDescription.prefix(40)) is none of \(Reason.allCases.map(\.rawValue))") }
        guard sources.count <= 3 else { throw WireError.invalid("source.change lists \(sources.count) sources, at most 3") }
        guard !sources.contains(deviceId) else { throw WireError.invalid("source.change offers \(deviceId) itself") }
    }
}

/// The broker tells the matcher where a device now gets content from: the sender of every
/// path it opens for a request of one source (the first or a new one), the origin when it
/// sends such a request there whole, and the path that stays when a `source.change` finds no
/// running session to move. The broker picks among the sources the plan listed (the first may
/// be gone, a path may break), so only it knows which one sends; the matcher's swarm plan takes
/// this as the device's upstream, and the plan that decides follows the paths that run.
public struct SourceTaken: WireMessage {
    public static let kind = "source.taken"

    public var deviceId: DeviceID
    public var contentId: ContentID
    /// Absent: the origin.
    public var sender: DeviceID?

    public init(deviceId: DeviceID, contentId: ContentID, sender: DeviceID?) {
        self.deviceId = deviceId
        self.contentId = contentId
        self.sender = sender
    }

    public func validate() throws {
        guard sender != deviceId else { throw WireError.invalid("source.taken has \(deviceId) send to itself") }
    }
}
