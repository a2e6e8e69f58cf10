import Foundation

// The broker's control dialog: agents and relays connect DEALER sockets (routing id = their
// device or relay id) to the broker's ROUTER.

/// A device agent introduces itself; sent on connect and whenever the broker seems to have
/// forgotten it.
public struct AgentHello: WireMessage {
    public static let kind = "agent.hello"
    public var deviceId: DeviceID
    public var zone: String?
    /// The relay on this device's host that forwards what it sends (it opted in to forwarding):
    /// the broker routes this device's sessions through it only if that relay says the same.
    public var forwarder: RelayID?
    public init(deviceId: DeviceID, zone: String? = nil, forwarder: RelayID? = nil) {
        self.deviceId = deviceId
        self.zone = zone
        self.forwarder = forwarder
    }
}

/// A relay introduces itself and the address others reach its ROUTER at.
public struct RelayHello: WireMessage {
    public static let kind = "relay.hello"
    public var relayId: RelayID
    public var endpoint: String
    public var zone: String?
    /// Set when the relay runs on a device's host as that device's forwarding endpoint: it
    /// carries only the sessions that device sends, and only if the device names it too.
    public var forwardsFor: DeviceID?
    public init(relayId: RelayID, endpoint: String, zone: String? = nil, forwardsFor: DeviceID? = nil) {
        self.relayId = relayId
        self.endpoint = endpoint
        self.zone = zone
        self.forwardsFor = forwardsFor
    }

    public func validate() throws {
        guard endpoint.hasPrefix("tcp://") || endpoint.hasPrefix("ipc://") else {
            throw WireError.invalid("relay endpoint must be tcp:// or ipc://")
        }
    }
}

/// A relay is shutting down: it takes no new sessions and finishes the ones it carries (or
/// gives up on them at its drain deadline).
public struct RelayDraining: WireMessage {
    public static let kind = "relay.draining"
    public var relayId: RelayID
    public var sessions: Int
    public var deadlineMilliseconds: Int
    public init(relayId: RelayID, sessions: Int, deadlineMilliseconds: Int) {
        self.relayId = relayId
        self.sessions = sessions
        self.deadlineMilliseconds = deadlineMilliseconds
    }
}

/// The broker's answer to a hello.
public struct Welcome: WireMessage {
    public static let kind = "welcome"
    public var heartbeatMilliseconds: Int
    /// The broker's session-token key (base64 Ed25519), made fresh at each start: relays check
    /// attaches with it, devices the relay key in their session's token.
    public var tokenKey: String?
    public init(heartbeatMilliseconds: Int, tokenKey: String? = nil) {
        self.heartbeatMilliseconds = heartbeatMilliseconds
        self.tokenKey = tokenKey
    }
}

/// What a session token allows: one party, at one overlay address, to join one session's link
/// on one relay, until `expiresAt`.
public struct SessionGrant: Codable, Sendable, Equatable {
    public var sessionId: SessionID
    public var relayId: RelayID
    public var address: String
    public var role: SessionRole
    /// Milliseconds since the Unix epoch.
    public var expiresAt: Int64
    /// Base64 CURVE public key of the relay, as it proved it to the broker: under the broker's
    /// signature, so a device connects to that relay and no other.
    public var relayKey: String?
    /// The device the token is for: with transport keys the relay binds the side to the
    /// connection whose key is that device's, whatever routing id or address it shows.
    public var deviceId: DeviceID?
    public init(sessionId: SessionID, relayId: RelayID, address: String, role: SessionRole, expiresAt: Int64, relayKey: String? = nil,
                deviceId: DeviceID? = nil) {
        self.relayKey = relayKey
        self.deviceId = deviceId
        self.sessionId = sessionId
        self.relayId = relayId
        self.address = address
        self.role = role
        self.expiresAt = expiresAt
    }
}

/// A grant signed by the broker. `grant` is the base64 of the grant's JSON exactly as signed, so
/// the relay checks the very bytes the broker signed before decoding them.
public struct SessionToken: Codable, Sendable, Equatable {
    public var grant: String
    public var signature: String
    public init(grant: String, signature: String) {
        self.grant = grant
        self.signature = signature
    }
}

/// Liveness both ways; any message counts as a sign of life, this one is sent when idle.
/// `load` is the number of sessions the sender is carrying.
public struct Heartbeat: WireMessage {
    public static let kind = "heartbeat"
    public static let maxLoad = 100_000
    public var load: Int
    public init(load: Int) { self.load = load }

    /// The broker ranks relays by it: a negative load would win every session, `Int.max` break sums.
    public func validate() throws {
        guard (0...Self.maxLoad).contains(load) else { throw WireError.invalid("load must be 0...\(Self.maxLoad)") }
    }
}

/// One neighbour of a virtual link: its overlay address (its routing id on the link), and, when
/// the link must connect to it, the relay endpoint to connect to.
public struct LinkHop: Codable, Sendable, Equatable {
    public var address: String
    /// Nil: the neighbour connects to me (a device, or an earlier relay). Set: I connect a
    /// DEALER to this relay's ROUTER.
    public var endpoint: String?
    /// Base64 CURVE public key of that relay, with `endpoint`.
    public var key: String?
    public init(address: String, endpoint: String? = nil, key: String? = nil) {
        self.key = key
        self.address = address
        self.endpoint = endpoint
    }
}

/// Step (f): the broker tells a relay to spawn a virtual link for a session.
public struct LinkOpen: WireMessage {
    public static let kind = "link.open"
    public var sessionId: SessionID
    public var requestId: RequestID
    public var contentId: ContentID
    /// This link's own overlay address.
    public var address: String
    /// Toward the sender.
    public var upstream: LinkHop
    /// Toward the receiver.
    public var downstream: LinkHop
    /// Packets the link may hold for the session; the end-to-end window bounds it anyway.
    public var window: Int
    /// The link is removed after this long without traffic.
    public var idleTimeoutMilliseconds: Int
    /// Payload bytes the link forwards at most; past it the session is aborted (`quota-exceeded`).
    public var quotaBytes: UInt64?
    /// Payload bytes a second the link forwards at most; faster packets wait (and the sender,
    /// out of credit, with them). Nil or 0: no limit.
    public var bytesPerSecond: UInt64?

    public init(sessionId: SessionID, requestId: RequestID, contentId: ContentID, address: String,
                upstream: LinkHop, downstream: LinkHop, window: Int, idleTimeoutMilliseconds: Int,
                quotaBytes: UInt64? = nil, bytesPerSecond: UInt64? = nil) {
        self.quotaBytes = quotaBytes
        self.bytesPerSecond = bytesPerSecond
        self.sessionId = sessionId
        self.requestId = requestId
        self.contentId = contentId
        self.address = address
        self.upstream = upstream
        self.downstream = downstream
        self.window = window
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
    }

    public func validate() throws {
        guard window > 0, window <= 4096 else { throw WireError.invalid("window must be 1...4096 packets") }
    }
}

/// A relay's link is up and listening for its neighbours.
public struct LinkReady: WireMessage {
    public static let kind = "link.ready"
    public var sessionId: SessionID
    public var address: String
    public init(sessionId: SessionID, address: String) {
        self.sessionId = sessionId
        self.address = address
    }
}

/// What a virtual link counted over its life; relays report these to the broker, which passes
/// them to the reporter to check what devices claim.
public struct LinkCounters: Codable, Sendable, Equatable {
    public var packetsForwarded: UInt64 = 0
    public var payloadBytesForwarded: UInt64 = 0
    public var controlForwarded: UInt64 = 0
    public var dropped: UInt64 = 0
    /// The most packets this link ever held waiting for the next hop.
    public var peakQueued: Int = 0
    public init() {}
}

/// A link was removed: the session ended, timed out or was cancelled.
public struct LinkClosed: WireMessage {
    public static let kind = "link.closed"
    public var sessionId: SessionID
    public var address: String
    public var reason: String
    public var counters: LinkCounters
    public init(sessionId: SessionID, address: String, reason: String, counters: LinkCounters) {
        self.sessionId = sessionId
        self.address = address
        self.reason = reason
        self.counters = counters
    }
}

public enum SessionRole: String, Codable, Sendable {
    case sender, receiver
}

/// Step (c): connection information for one device. The device spawns a virtual link with
/// `address` as its routing id and connects it to `relayEndpoint`.
public struct SessionOpen: WireMessage {
    public static let kind = "session.open"
    public var sessionId: SessionID
    public var requestId: RequestID
    public var traceId: String
    public var role: SessionRole
    public var content: ContentSummary
    /// This device's overlay address for the session.
    public var address: String
    /// The other device's overlay address.
    public var peerAddress: String
    public var peerDevice: DeviceID
    /// The first relay on the path as seen from this device.
    public var relayEndpoint: String
    /// Every relay on the path, sender side first.
    public var relays: [RelayID]
    public var window: Int
    /// Lets this device join the session's link on the first relay; it goes in its attach.
    public var token: SessionToken?
    /// The stripe this session brings, when several sessions serve the request at once; nil:
    /// the whole content.
    public var stripe: Stripe?

    public init(sessionId: SessionID, requestId: RequestID, traceId: String, role: SessionRole, content: ContentSummary,
                address: String, peerAddress: String, peerDevice: DeviceID, relayEndpoint: String, relays: [RelayID], window: Int,
                token: SessionToken? = nil, stripe: Stripe? = nil) {
        self.token = token
        self.stripe = stripe
        self.sessionId = sessionId
        self.requestId = requestId
        self.traceId = traceId
        self.role = role
        self.content = content
        self.address = address
        self.peerAddress = peerAddress
        self.peerDevice = peerDevice
        self.relayEndpoint = relayEndpoint
        self.relays = relays
        self.window = window
    }

    public func validate() throws {
        try content.validate()
        guard window > 0, window <= 4096 else { throw WireError.invalid("window must be 1...4096 packets") }
        try stripe?.validate(chunkCount: content.chunkCount)
    }

    /// The chunks this session is to bring.
    public var chunks: Range<Int> { stripe?.chunks(of: content.chunkCount) ?? 0..<content.chunkCount }
}

/// Why the origin serves a request, spelled once: the `reason` of `match.decision` (the
/// matcher's) and of `origin.directive` (either's). A directive after a broken path says the
/// break first (`relay-lost; ...`); docs/protocol.md lists each (a test checks).
public enum OriginReason: String, CaseIterable, Sendable {
    case noHolder = "no-holder"
    case onlyRequesterHolds = "only-requester-holds"
    case noServingHolder = "no-serving-holder"
    case everyHolderSilent = "every-holder-silent"
    case everyHolderBanned = "every-holder-banned"
    case sourceNotConnected = "source-not-connected"
    case noRelay = "no-relay"
    case addressPoolExhausted = "address-pool-exhausted"
    case relayUnreachable = "relay-unreachable"
    case relayTimeout = "relay-timeout"
    case withdrawn
}

/// Why the broker ends or moves a session, spelled once: `session.cancel`'s `reason`.
/// docs/protocol.md lists each (a test checks).
public enum CancelReason: String, CaseIterable, Sendable {
    case relayLost = "relay-lost"
    case senderLost = "sender-lost"
    case corruptChunks = "corrupt-chunks"
    case senderSilent = "sender-silent"
    case senderRevoked = "sender-revoked"
    case sessionLifetime = "session-lifetime"
    case relayUnreachable = "relay-unreachable"
    case relayTimeout = "relay-timeout"
    case receiverLost = "receiver-lost"
    case receiverRevoked = "receiver-revoked"
    /// To the revoked device itself.
    case revoked
    case withdrawn
}

/// Why a device ends its side of a session short, spelled once: `session.finished`'s `reason`
/// (an abort's reason passes through as it came). docs/protocol.md lists each (a test checks).
public enum FinishReason: String, CaseIterable, Sendable {
    case linkIdle = "link-idle"
    case corruptChunks = "corrupt-chunks"
    case senderSilent = "sender-silent"
    case alreadyHeld = "already-held"
    case notNeeded = "not-needed"
    case linkSpawnFailed = "link-spawn-failed"
    /// The receiver's connection to the relay dropped: it awaits a new path (the broker gives
    /// one avoiding that relay and, where it can, that sender).
    case relayDisconnected = "relay-disconnected"
    case layoutMismatch = "layout-mismatch"
    case notHeld = "not-held"
    case notServing = "not-serving"
    case noContentKey = "no-content-key"
    /// A sender's, when the content was withdrawn.
    case withdrawn
    /// A sender's, still getting the content, that passed on packets of a chunk before the
    /// chunk verified and then found they were not the verified ones (its own upstream lied):
    /// the receiver gets the rest elsewhere rather than complete a chunk that fails.
    case passedOnUnverified = "passed-on-unverified"
    /// A receiver's, of one of several stripes: another stripe is done while over half of this
    /// one is still to come, so its sender is the slower; the receiver keeps what it verified
    /// and awaits a new path for the rest, which the broker gives from a source free of this
    /// request (the one just done). Once per stripe.
    case slowerStripe = "slower-stripe"
}

/// No peer can serve (or none could be connected): the device fetches from the origin itself.
public struct OriginDirective: WireMessage {
    public static let kind = "origin.directive"
    public var requestId: RequestID
    public var traceId: String
    public var content: ContentSummary
    public var reason: String
    /// Only this stripe goes to the origin: the request's other stripes keep their sessions.
    public var stripe: Stripe?
    public init(requestId: RequestID, traceId: String, content: ContentSummary, reason: String, stripe: Stripe? = nil) {
        self.requestId = requestId
        self.traceId = traceId
        self.content = content
        self.reason = reason
        self.stripe = stripe
    }

    public func validate() throws {
        try content.validate()
        try stripe?.validate(chunkCount: content.chunkCount)
    }
}

public enum SessionOutcome: String, Codable, Sendable {
    case completed, failed, cancelled
}

/// A device's side of a session is over.
public struct SessionFinished: WireMessage {
    public static let kind = "session.finished"
    public var sessionId: SessionID
    public var requestId: RequestID
    public var role: SessionRole
    public var outcome: SessionOutcome
    public var payloadBytes: UInt64
    public var reason: String?
    /// Chunks from this session that failed verification (receiver only): `rejectedChunks` in
    /// all, `unopenedChunks` of them because a packet failed its tag (the sender or the relay
    /// could be at fault), the rest because the bytes opened but fail the manifest's hash (only
    /// a holder of the content key could make them). Any gives the receiver a new path; the
    /// broker decides whom to blame (`BlameLedger`).
    public var rejectedChunks: Int?
    public var unopenedChunks: Int?
    public init(sessionId: SessionID, requestId: RequestID, role: SessionRole, outcome: SessionOutcome,
                payloadBytes: UInt64, reason: String? = nil, rejectedChunks: Int? = nil, unopenedChunks: Int? = nil) {
        self.sessionId = sessionId
        self.requestId = requestId
        self.role = role
        self.outcome = outcome
        self.payloadBytes = payloadBytes
        self.reason = reason
        self.rejectedChunks = rejectedChunks
        self.unopenedChunks = unopenedChunks
    }

    public func validate() throws {
        if let rejectedChunks, rejectedChunks < 0 { throw WireError.invalid("rejectedChunks must not be negative") }
        if let unopenedChunks, unopenedChunks < 0 || unopenedChunks > (rejectedChunks ?? 0) {
            throw WireError.invalid("unopenedChunks must be 0...rejectedChunks")
        }
    }
}

/// The broker ends a session early (timeout, a party gone, operator action).
public struct SessionCancel: WireMessage {
    public static let kind = "session.cancel"
    public var sessionId: SessionID
    public var reason: String
    /// True when the broker is finding the receiver a new path (its relay or sender was lost,
    /// or the sender sent corrupt chunks): the receiver keeps what it verified and waits for a
    /// session.open or origin.directive for the same request rather than going to the origin.
    public var newPathFollows: Bool?
    public init(sessionId: SessionID, reason: String, newPathFollows: Bool? = nil) {
        self.sessionId = sessionId
        self.reason = reason
        self.newPathFollows = newPathFollows
    }
}
