import Foundation

/// An event's `data`, typed: one struct per topic, its fields the ones docs/events.md lists for
/// that topic (a test checks each against its row). A field one publisher sets and another
/// doesn't is optional, and absent from the JSON when unset.
public protocol EventPayload: Encodable, Sendable {
    /// Its fields, spelled as on the wire; the compiler holds them to the stored properties.
    associatedtype CodingKeys: CodingKey & CaseIterable
    static var topic: EventTopic { get }
    /// Every field it may carry, as docs/events.md names them.
    static var fieldNames: [String] { get }
}

extension EventPayload {
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    /// As the event carries it.
    public var fields: [String: JSONValue] {
        guard let json = try? JSONCoding.encoder.encode(self),
              let fields = try? JSONCoding.decoder.decode([String: JSONValue].self, from: json) else { return [:] }
        return fields
    }
}

/// A field that is always there, `null` when it has no value: "no limit" rather than "not said".
public struct Nullable<Wrapped: Encodable & Sendable>: Encodable, Sendable {
    public var value: Wrapped?
    public init(_ value: Wrapped?) { self.value = value }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value { try container.encode(value) } else { try container.encodeNil() }
    }
}

/// What an audited change records (`detail` in the audit trail) and announces: its event is
/// these fields with `actor` and `auditSeq` (`AuditEntry`).
public protocol AuditDetail: EventPayload {}

/// Every topic's data, and the payloads the docs test reads.
public enum EventData {
    // MARK: the origin (audited changes, with `actor` and `auditSeq` added)

    public struct ContentPublished: AuditDetail {
        public static let topic = EventTopic.contentPublished
        public var contentId: String, name: String, size: UInt64, chunks: Int, audience: String, allowed: Int
        public enum CodingKeys: String, CodingKey, CaseIterable { case contentId, name, size, chunks, audience, allowed }
        public init(contentId: String, name: String, size: UInt64, chunks: Int, audience: String, allowed: Int) {
            (self.contentId, self.name, self.size, self.chunks, self.audience, self.allowed) = (contentId, name, size, chunks, audience, allowed)
        }
    }

    public struct ContentWithdrawn: AuditDetail {
        public static let topic = EventTopic.contentWithdrawn
        public var contentId: String
        /// Announced, not recorded: whether intake took the message.
        public var ferryTold: Bool?
        public enum CodingKeys: String, CodingKey, CaseIterable { case contentId, ferryTold }
        public init(contentId: String, ferryTold: Bool? = nil) { (self.contentId, self.ferryTold) = (contentId, ferryTold) }
    }

    public struct DeviceEnrolled: AuditDetail {
        public static let topic = EventTopic.deviceEnrolled
        public var deviceId: String, kind: String, tokenId: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, kind, tokenId }
        public init(deviceId: String, kind: String, tokenId: String) { (self.deviceId, self.kind, self.tokenId) = (deviceId, kind, tokenId) }
    }

    public struct DeviceRevoked: AuditDetail {
        public static let topic = EventTopic.deviceRevoked
        public var deviceId: String, kind: String
        /// Announced, not recorded: whether intake took the message.
        public var ferryTold: Bool?
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, kind, ferryTold }
        public init(deviceId: String, kind: String, ferryTold: Bool? = nil) { (self.deviceId, self.kind, self.ferryTold) = (deviceId, kind, ferryTold) }
    }

    public struct TokenCreated: AuditDetail {
        public static let topic = EventTopic.tokenCreated
        public var tokenId: String, kind: String, partyId: String, uses: Int?, expiresAt: String?
        public enum CodingKeys: String, CodingKey, CaseIterable { case tokenId, kind, partyId, uses, expiresAt }
        public init(tokenId: String, kind: String, partyId: String, uses: Int?, expiresAt: String?) {
            (self.tokenId, self.kind, self.partyId, self.uses, self.expiresAt) = (tokenId, kind, partyId, uses, expiresAt)
        }
    }

    public struct TokenRevoked: AuditDetail {
        public static let topic = EventTopic.tokenRevoked
        public var tokenId: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case tokenId }
        public init(tokenId: String) { self.tokenId = tokenId }
    }

    // MARK: requests (intake, origin)

    public struct RequestReceived: EventPayload {
        public static let topic = EventTopic.requestReceived
        public var deviceId: String, contentId: String, size: UInt64, server: String, traceId: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, contentId, size, server, traceId }
        public init(deviceId: String, contentId: String, size: UInt64, server: String, traceId: String) {
            (self.deviceId, self.contentId, self.size, self.server, self.traceId) = (deviceId, contentId, size, server, traceId)
        }
    }

    public struct RequestRetried: EventPayload {
        public static let topic = EventTopic.requestRetried
        public var deviceId: String, attempt: Int, traceId: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, attempt, traceId }
        public init(deviceId: String, attempt: Int, traceId: String) { (self.deviceId, self.attempt, self.traceId) = (deviceId, attempt, traceId) }
    }

    public struct RequestRejected: EventPayload {
        public static let topic = EventTopic.requestRejected
        public var reason: String, detail: String?, contentId: String?, deviceId: String?
        /// `origin` when the origin refused it.
        public var service: String?
        public enum CodingKeys: String, CodingKey, CaseIterable { case reason, detail, contentId, deviceId, service }
        public init(reason: String, detail: String? = nil, contentId: String? = nil, deviceId: String? = nil, service: String? = nil) {
            (self.reason, self.detail, self.contentId, self.deviceId, self.service) = (reason, detail, contentId, deviceId, service)
        }
    }

    // MARK: matching

    public struct MatchFound: EventPayload {
        public static let topic = EventTopic.matchFound
        public var source: String, candidates: [String], deviceId: String, contentId: String
        /// The source is still getting the content itself (a swarm member), not a holder of it whole.
        public var stillGetting: Bool
        /// When several devices send at once: the first source of each stripe, in stripe order.
        public var stripes: [String]?
        public enum CodingKeys: String, CodingKey, CaseIterable { case source, candidates, deviceId, contentId, stillGetting, stripes }
        public init(source: String, candidates: [String], deviceId: String, contentId: String, stillGetting: Bool = false, stripes: [String]? = nil) {
            (self.source, self.candidates, self.deviceId, self.contentId, self.stillGetting) = (source, candidates, deviceId, contentId, stillGetting)
            self.stripes = stripes
        }
    }

    public struct MatchNone: EventPayload {
        public static let topic = EventTopic.matchNone
        public var reason: String, deviceId: String, contentId: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case reason, deviceId, contentId }
        public init(reason: String, deviceId: String, contentId: String) { (self.reason, self.deviceId, self.contentId) = (reason, deviceId, contentId) }
    }

    public struct MatchFailed: EventPayload {
        public static let topic = EventTopic.matchFailed
        public var reason: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case reason }
        public init(reason: String) { self.reason = reason }
    }

    public struct SenderExcluded: EventPayload {
        public static let topic = EventTopic.senderExcluded
        public var deviceId: String, silentSessions: Int, excludedForMilliseconds: Int
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, silentSessions, excludedForMilliseconds }
        public init(deviceId: String, silentSessions: Int, excludedForMilliseconds: Int) {
            (self.deviceId, self.silentSessions, self.excludedForMilliseconds) = (deviceId, silentSessions, excludedForMilliseconds)
        }
    }

    public struct HoldingsUpdated: EventPayload {
        public static let topic = EventTopic.holdingsUpdated
        public var deviceId: String, serving: Bool, contents: [String]
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, serving, contents }
        public init(deviceId: String, serving: Bool, contents: [String]) { (self.deviceId, self.serving, self.contents) = (deviceId, serving, contents) }
    }

    // MARK: sessions (broker)

    public struct Addresses: Encodable, Sendable {
        public var sender: String, receiver: String, relay: String
        public init(sender: String, receiver: String, relay: String) { (self.sender, self.receiver, self.relay) = (sender, receiver, relay) }
    }

    public struct SessionBrokered: EventPayload {
        public static let topic = EventTopic.sessionBrokered
        public var sender: String, receiver: String, relays: [String], relayEndpoint: String, addresses: Addresses, window: Int, traceId: String
        public var stripe: Stripe?
        public enum CodingKeys: String, CodingKey, CaseIterable { case sender, receiver, relays, relayEndpoint, addresses, window, traceId, stripe }
        public init(sender: String, receiver: String, relays: [String], relayEndpoint: String, addresses: Addresses, window: Int, traceId: String,
                    stripe: Stripe? = nil) {
            (self.sender, self.receiver, self.relays, self.relayEndpoint) = (sender, receiver, relays, relayEndpoint)
            (self.addresses, self.window, self.traceId, self.stripe) = (addresses, window, traceId, stripe)
        }
    }

    public struct SessionResent: EventPayload {
        public static let topic = EventTopic.sessionResent
        public var state: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case state }
        public init(state: String) { self.state = state }
    }

    public struct SessionOriginDirected: EventPayload {
        public static let topic = EventTopic.sessionOriginDirected
        public var reason: String, deviceId: String
        /// Only this stripe goes to the origin; the request's other stripes keep their sessions.
        public var stripe: Stripe?
        public enum CodingKeys: String, CodingKey, CaseIterable { case reason, deviceId, stripe }
        public init(reason: String, deviceId: String, stripe: Stripe? = nil) { (self.reason, self.deviceId, self.stripe) = (reason, deviceId, stripe) }
    }

    /// How a session ended, as `session.closed` and the closing `session.failed` say it.
    public struct SessionEnding: Encodable, Sendable {
        public var outcome: String, receiverPayloadBytes: UInt64, seconds: Double, reason: String?
        /// The relay's count; `null` when it never reported.
        public var relayPayloadBytes: Nullable<UInt64>, relayPackets: UInt64?
        public init(outcome: String, receiverPayloadBytes: UInt64, seconds: Double, reason: String?, relayPayloadBytes: UInt64?, relayPackets: UInt64?) {
            (self.outcome, self.receiverPayloadBytes, self.seconds, self.reason) = (outcome, receiverPayloadBytes, seconds, reason)
            (self.relayPayloadBytes, self.relayPackets) = (Nullable(relayPayloadBytes), relayPackets)
        }
    }

    public struct SessionClosed: EventPayload {
        public static let topic = EventTopic.sessionClosed
        public var outcome: String, receiverPayloadBytes: UInt64, seconds: Double, reason: String?
        public var relayPayloadBytes: Nullable<UInt64>, relayPackets: UInt64?
        public enum CodingKeys: String, CodingKey, CaseIterable { case outcome, receiverPayloadBytes, seconds, reason, relayPayloadBytes, relayPackets }
        public init(_ ending: SessionEnding) {
            (outcome, receiverPayloadBytes, seconds, reason) = (ending.outcome, ending.receiverPayloadBytes, ending.seconds, ending.reason)
            (relayPayloadBytes, relayPackets) = (ending.relayPayloadBytes, ending.relayPackets)
        }
    }

    public struct SessionRepathed: EventPayload {
        public static let topic = EventTopic.sessionRepathed
        public var reason: String, sender: String, relayId: String, previousSender: String, previousRelayId: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case reason, sender, relayId, previousSender, previousRelayId }
        public init(reason: String, sender: String, relayId: String, previousSender: String, previousRelayId: String) {
            (self.reason, self.sender, self.relayId, self.previousSender, self.previousRelayId) = (reason, sender, relayId, previousSender, previousRelayId)
        }
    }

    /// Every way a request or session fails at the broker; each sets the fields its case names
    /// in docs/events.md.
    public struct SessionFailed: EventPayload {
        public static let topic = EventTopic.sessionFailed
        public var reason: String?, deviceId: String?, newPath: Bool?
        public var sender: String?, relayId: String?, unopenedChunks: Int?, senderRelays: Int?, relaySenders: Int?
        public var outcome: String?, receiverPayloadBytes: UInt64?, seconds: Double?, relayPayloadBytes: Nullable<UInt64>?, relayPackets: UInt64?
        public enum CodingKeys: String, CodingKey, CaseIterable {
            case reason, deviceId, newPath, sender, relayId, unopenedChunks, senderRelays, relaySenders
            case outcome, receiverPayloadBytes, seconds, relayPayloadBytes, relayPackets
        }
        public init(reason: String, deviceId: String? = nil, newPath: Bool? = nil) { (self.reason, self.deviceId, self.newPath) = (reason, deviceId, newPath) }
        public init(unopenedPacketsFrom sender: String, relayId: String, unopenedChunks: Int, senderRelays: Int, relaySenders: Int) {
            reason = "unopened-packets"
            (self.sender, self.relayId, self.unopenedChunks, self.senderRelays, self.relaySenders) = (sender, relayId, unopenedChunks, senderRelays, relaySenders)
        }
        public init(_ ending: SessionEnding) {
            (outcome, receiverPayloadBytes, seconds, reason) = (ending.outcome, ending.receiverPayloadBytes, ending.seconds, ending.reason)
            (relayPayloadBytes, relayPackets) = (ending.relayPayloadBytes, ending.relayPackets)
        }
    }

    // MARK: virtual links (relay, agent)

    public struct LinkSpawned: EventPayload {
        public static let topic = EventTopic.linkSpawned
        public var role: String, relayId: String?, deviceId: String?, address: String
        /// The relay's.
        public var upstream: String?, downstream: String?, window: Int?, quotaBytes: Nullable<UInt64>?, bytesPerSecond: Nullable<UInt64>?
        /// A device's.
        public var relayEndpoint: String?, peerAddress: String?
        public enum CodingKeys: String, CodingKey, CaseIterable {
            case role, relayId, deviceId, address, upstream, downstream, window, quotaBytes, bytesPerSecond, relayEndpoint, peerAddress
        }
        public init(relayId: String, address: String, upstream: String, downstream: String, window: Int, quotaBytes: UInt64?, bytesPerSecond: UInt64?) {
            (role, self.relayId, self.address, self.upstream, self.downstream, self.window) = ("relay", relayId, address, upstream, downstream, window)
            (self.quotaBytes, self.bytesPerSecond) = (Nullable(quotaBytes), Nullable(bytesPerSecond))
        }
        public init(role: String, deviceId: String, address: String, relayEndpoint: String, peerAddress: String) {
            (self.role, self.deviceId, self.address, self.relayEndpoint, self.peerAddress) = (role, deviceId, address, relayEndpoint, peerAddress)
        }
    }

    public struct LinkClosed: EventPayload {
        public static let topic = EventTopic.linkClosed
        public var role: String, relayId: String?, deviceId: String?, reason: String
        public var packets: UInt64?, payloadBytes: UInt64, peakQueued: Int?, dropped: UInt64?
        public var rejectedChunks: Int?, verifiedBytes: UInt64?, awaitingNewPath: Bool?
        public enum CodingKeys: String, CodingKey, CaseIterable {
            case role, relayId, deviceId, reason, packets, payloadBytes, peakQueued, dropped, rejectedChunks, verifiedBytes, awaitingNewPath
        }
        public init(role: String, relayId: String? = nil, deviceId: String? = nil, reason: String, packets: UInt64? = nil, payloadBytes: UInt64,
                    peakQueued: Int? = nil, dropped: UInt64? = nil, rejectedChunks: Int? = nil, verifiedBytes: UInt64? = nil, awaitingNewPath: Bool? = nil) {
            (self.role, self.relayId, self.deviceId, self.reason, self.packets, self.payloadBytes) = (role, relayId, deviceId, reason, packets, payloadBytes)
            (self.peakQueued, self.dropped, self.rejectedChunks, self.verifiedBytes, self.awaitingNewPath) = (peakQueued, dropped, rejectedChunks, verifiedBytes, awaitingNewPath)
        }
    }

    public struct LinkThrottled: EventPayload {
        public static let topic = EventTopic.linkThrottled
        public var relayId: String, bytesPerSecond: UInt64
        public enum CodingKeys: String, CodingKey, CaseIterable { case relayId, bytesPerSecond }
        public init(relayId: String, bytesPerSecond: UInt64) { (self.relayId, self.bytesPerSecond) = (relayId, bytesPerSecond) }
    }

    public struct LinkQuotaExceeded: EventPayload {
        public static let topic = EventTopic.linkQuotaExceeded
        public var relayId: String, quotaBytes: UInt64, payloadBytes: UInt64
        public enum CodingKeys: String, CodingKey, CaseIterable { case relayId, quotaBytes, payloadBytes }
        public init(relayId: String, quotaBytes: UInt64, payloadBytes: UInt64) { (self.relayId, self.quotaBytes, self.payloadBytes) = (relayId, quotaBytes, payloadBytes) }
    }

    public struct LinkDropped: EventPayload {
        public static let topic = EventTopic.linkDropped
        public var relayId: String, reason: String, detail: String, dropped: [String: UInt64]
        public enum CodingKeys: String, CodingKey, CaseIterable { case relayId, reason, detail, dropped }
        public init(relayId: String, reason: String, detail: String, dropped: [String: UInt64]) {
            (self.relayId, self.reason, self.detail, self.dropped) = (relayId, reason, detail, dropped)
        }
    }

    public struct Layout: Encodable, Sendable, Equatable {
        public var size: UInt64, chunkSize: UInt32, packetSize: UInt32
        public init(_ summary: ContentSummary) { (size, chunkSize, packetSize) = (summary.size, summary.chunkSize, summary.packetSize) }
    }

    public struct LinkRefused: EventPayload {
        public static let topic = EventTopic.linkRefused
        public var role: String, deviceId: String, reason: String, sessionLayout: Layout, manifestLayout: Layout?
        public enum CodingKeys: String, CodingKey, CaseIterable { case role, deviceId, reason, sessionLayout, manifestLayout }
        public init(role: String, deviceId: String, reason: String, sessionLayout: Layout, manifestLayout: Layout?) {
            (self.role, self.deviceId, self.reason, self.sessionLayout, self.manifestLayout) = (role, deviceId, reason, sessionLayout, manifestLayout)
        }
    }

    // MARK: relays and devices (broker, matcher)

    public struct RelayJoined: EventPayload {
        public static let topic = EventTopic.relayJoined
        public var relayId: String, endpoint: String, forwardsFor: Nullable<String>
        public enum CodingKeys: String, CodingKey, CaseIterable { case relayId, endpoint, forwardsFor }
        public init(relayId: String, endpoint: String, forwardsFor: String?) {
            (self.relayId, self.endpoint, self.forwardsFor) = (relayId, endpoint, Nullable(forwardsFor))
        }
    }

    public struct RelayDraining: EventPayload {
        public static let topic = EventTopic.relayDraining
        public var relayId: String, sessions: Int, deadlineMilliseconds: Int
        public enum CodingKeys: String, CodingKey, CaseIterable { case relayId, sessions, deadlineMilliseconds }
        public init(relayId: String, sessions: Int, deadlineMilliseconds: Int) {
            (self.relayId, self.sessions, self.deadlineMilliseconds) = (relayId, sessions, deadlineMilliseconds)
        }
    }

    public struct RelayLost: EventPayload {
        public static let topic = EventTopic.relayLost
        public var relayId: String, endpoint: String, reason: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case relayId, endpoint, reason }
        public init(relayId: String, endpoint: String, reason: String) { (self.relayId, self.endpoint, self.reason) = (relayId, endpoint, reason) }
    }

    public struct DeviceJoined: EventPayload {
        public static let topic = EventTopic.deviceJoined
        public var deviceId: String, zone: Nullable<String>
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, zone }
        public init(deviceId: String, zone: String?) { (self.deviceId, self.zone) = (deviceId, Nullable(zone)) }
    }

    public struct DeviceLost: EventPayload {
        public static let topic = EventTopic.deviceLost
        public var deviceId: String, reason: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, reason }
        public init(deviceId: String, reason: String) { (self.deviceId, self.reason) = (deviceId, reason) }
    }

    public struct DeviceBanned: EventPayload {
        public static let topic = EventTopic.deviceBanned
        public var deviceId: String, contentId: String, rejectedChunks: Int, reportedBy: String, cause: String, relays: Int
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, contentId, rejectedChunks, reportedBy, cause, relays }
        public init(deviceId: String, contentId: String, rejectedChunks: Int, reportedBy: String, cause: String, relays: Int) {
            (self.deviceId, self.contentId, self.rejectedChunks, self.reportedBy, self.cause, self.relays) = (deviceId, contentId, rejectedChunks, reportedBy, cause, relays)
        }
    }

    // MARK: transfers (agent)

    public struct ContentEvicted: EventPayload {
        public static let topic = EventTopic.contentEvicted
        public var deviceId: String, contentId: String, reason: String, quotaBytes: UInt64?
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, contentId, reason, quotaBytes }
        public init(deviceId: String, contentId: String, reason: String, quotaBytes: UInt64? = nil) {
            (self.deviceId, self.contentId, self.reason, self.quotaBytes) = (deviceId, contentId, reason, quotaBytes)
        }
    }

    public struct TransferStarted: EventPayload {
        public static let topic = EventTopic.transferStarted
        public var deviceId: String, source: String, relays: [String]?, reason: String?, wantChunks: Int, stripe: Stripe?
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, source, relays, reason, wantChunks, stripe }
        public init(deviceId: String, source: String, relays: [String]? = nil, reason: String? = nil, wantChunks: Int, stripe: Stripe? = nil) {
            (self.deviceId, self.source, self.relays, self.reason, self.wantChunks, self.stripe) = (deviceId, source, relays, reason, wantChunks, stripe)
        }
    }

    public struct TransferProgress: EventPayload {
        public static let topic = EventTopic.transferProgress
        public var deviceId: String, receivedBytes: UInt64, totalBytes: UInt64, source: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, receivedBytes, totalBytes, source }
        public init(deviceId: String, receivedBytes: UInt64, totalBytes: UInt64, source: String) {
            (self.deviceId, self.receivedBytes, self.totalBytes, self.source) = (deviceId, receivedBytes, totalBytes, source)
        }
    }

    public struct TransferChunkRejected: EventPayload {
        public static let topic = EventTopic.transferChunkRejected
        public var chunk: Int, sender: String, deviceId: String, cause: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case chunk, sender, deviceId, cause }
        public init(chunk: Int, sender: String, deviceId: String, cause: String) { (self.chunk, self.sender, self.deviceId, self.cause) = (chunk, sender, deviceId, cause) }
    }

    public struct TransferCompleted: EventPayload {
        public static let topic = EventTopic.transferCompleted
        public var deviceId: String, contentId: String, size: UInt64, bytesFromPeers: UInt64, bytesFromOrigin: UInt64, bytesLocal: UInt64
        public var peerPayloadBytes: UInt64, seconds: Double, MiBps: Double
        public enum CodingKeys: String, CodingKey, CaseIterable {
            case deviceId, contentId, size, bytesFromPeers, bytesFromOrigin, bytesLocal, peerPayloadBytes, seconds, MiBps
        }
        public init(deviceId: String, contentId: String, size: UInt64, bytesFromPeers: UInt64, bytesFromOrigin: UInt64, bytesLocal: UInt64,
                    peerPayloadBytes: UInt64, seconds: Double) {
            (self.deviceId, self.contentId, self.size, self.bytesFromPeers, self.bytesFromOrigin) = (deviceId, contentId, size, bytesFromPeers, bytesFromOrigin)
            (self.bytesLocal, self.peerPayloadBytes, self.seconds) = (bytesLocal, peerPayloadBytes, seconds)
            MiBps = seconds > 0 ? Double(size) / 1_048_576 / seconds : 0
        }
    }

    public struct TransferFailed: EventPayload {
        public static let topic = EventTopic.transferFailed
        public var deviceId: String, contentId: String, reason: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, contentId, reason }
        public init(deviceId: String, contentId: String, reason: String) { (self.deviceId, self.contentId, self.reason) = (deviceId, contentId, reason) }
    }

    // MARK: fulfilment (reporter)

    public struct FulfilmentRecorded: EventPayload {
        public static let topic = EventTopic.fulfilmentRecorded
        public var deviceId: String, contentId: String, bytesFromPeers: UInt64, bytesFromOrigin: UInt64, verification: String, server: String
        public var sources: [String]
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId, contentId, bytesFromPeers, bytesFromOrigin, verification, server, sources }
        public init(deviceId: String, contentId: String, bytesFromPeers: UInt64, bytesFromOrigin: UInt64, verification: String, server: String, sources: [String]) {
            (self.deviceId, self.contentId, self.bytesFromPeers, self.bytesFromOrigin) = (deviceId, contentId, bytesFromPeers, bytesFromOrigin)
            (self.verification, self.server, self.sources) = (verification, server, sources)
        }
    }

    public struct FulfilmentDuplicate: EventPayload {
        public static let topic = EventTopic.fulfilmentDuplicate
        public var deviceId: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case deviceId }
        public init(deviceId: String) { self.deviceId = deviceId }
    }

    public struct FulfilmentRejected: EventPayload {
        public static let topic = EventTopic.fulfilmentRejected
        public var reason: String, deviceId: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case reason, deviceId }
        public init(reason: String, deviceId: String) { (self.reason, self.deviceId) = (reason, deviceId) }
    }

    public struct FulfilmentAcknowledged: EventPayload {
        public static let topic = EventTopic.fulfilmentAcknowledged
        public var server: String, attempts: Int, duplicate: Bool
        public enum CodingKeys: String, CodingKey, CaseIterable { case server, attempts, duplicate }
        public init(server: String, attempts: Int, duplicate: Bool) { (self.server, self.attempts, self.duplicate) = (server, attempts, duplicate) }
    }

    public struct FulfilmentDeliveryFailed: EventPayload {
        public static let topic = EventTopic.fulfilmentDeliveryFailed
        public var server: String, attempts: Int, error: String, retryInSeconds: Double
        public enum CodingKeys: String, CodingKey, CaseIterable { case server, attempts, error, retryInSeconds }
        public init(server: String, attempts: Int, error: String, retryInSeconds: Double) {
            (self.server, self.attempts, self.error, self.retryInSeconds) = (server, attempts, error, retryInSeconds)
        }
    }

    // MARK: refusals (any service)

    public struct MessageDropped: EventPayload {
        public static let topic = EventTopic.messageDropped
        public var service: String, reason: String, kind: String?, peer: String?
        /// The matcher's running count of dropped announcements.
        public var dropped: Int?
        public enum CodingKeys: String, CodingKey, CaseIterable { case service, reason, kind, peer, dropped }
        public init(service: String, reason: String, kind: String? = nil, peer: String? = nil, dropped: Int? = nil) {
            (self.service, self.reason, self.kind, self.peer, self.dropped) = (service, reason, kind, peer, dropped)
        }
    }

    public struct TransportRefused: EventPayload {
        public static let topic = EventTopic.transportRefused
        public var domain: String, address: String, key: String, reason: String
        public enum CodingKeys: String, CodingKey, CaseIterable { case domain, address, key, reason }
        public init(domain: String, address: String, key: String, reason: String) { (self.domain, self.address, self.key, self.reason) = (domain, address, key, reason) }
    }

    /// Every payload, for the docs test: each topic has one.
    public static let all: [any EventPayload.Type] = [
        ContentPublished.self, ContentWithdrawn.self, DeviceEnrolled.self, DeviceRevoked.self, TokenCreated.self, TokenRevoked.self,
        RequestReceived.self, RequestRetried.self, RequestRejected.self,
        MatchFound.self, MatchNone.self, MatchFailed.self, SenderExcluded.self, HoldingsUpdated.self,
        SessionBrokered.self, SessionResent.self, SessionOriginDirected.self, SessionClosed.self, SessionRepathed.self, SessionFailed.self,
        LinkSpawned.self, LinkClosed.self, LinkThrottled.self, LinkQuotaExceeded.self, LinkDropped.self, LinkRefused.self,
        RelayJoined.self, RelayDraining.self, RelayLost.self, DeviceJoined.self, DeviceLost.self, DeviceBanned.self,
        ContentEvicted.self, TransferStarted.self, TransferProgress.self, TransferChunkRejected.self, TransferCompleted.self, TransferFailed.self,
        FulfilmentRecorded.self, FulfilmentDuplicate.self, FulfilmentRejected.self, FulfilmentAcknowledged.self, FulfilmentDeliveryFailed.self,
        MessageDropped.self, TransportRefused.self,
    ]
}
