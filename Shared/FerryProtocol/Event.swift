import Foundation

/// One event on the stream: PUBlished as two frames `[topic, JSON]`, so any SUB client can
/// filter by topic prefix and read the JSON without Ferry's code.
public struct FerryEvent: Codable, Sendable, Equatable {
    public var topic: String
    /// RFC 3339 UTC with microseconds.
    public var time: String
    /// The service instance that published it, e.g. `broker` or `agent:dev-1`.
    public var publisher: String
    /// Per publisher, from 1, without gaps: a reader can order and spot losses or repeats.
    public var seq: UInt64
    public var requestId: String?
    public var sessionId: String?
    public var data: [String: JSONValue]

    public init(topic: String, time: String, publisher: String, seq: UInt64, requestId: String?, sessionId: String?,
                data: [String: JSONValue]) {
        self.topic = topic
        self.time = time
        self.publisher = publisher
        self.seq = seq
        self.requestId = requestId
        self.sessionId = sessionId
        self.data = data
    }

    /// The event bus disconnects a publisher that sends a larger frame; real events are a few KiB.
    public static let maxBytes = 1 << 20

    public var frames: [Data] {
        get throws { [Data(topic.utf8), try JSONCoding.encoder.encode(self)] }
    }

    public static func decode(frames: [Data]) throws -> FerryEvent {
        guard frames.count == 2 else { throw WireError.malformed("an event is two frames [topic, JSON], got \(frames.count)") }
        do {
            return try JSONCoding.decoder.decode(FerryEvent.self, from: frames[1])
        } catch {
            throw WireError.malformed("event: \(Envelope.summary(of: error))")
        }
    }
}

/// Every topic a Ferry service publishes. docs/events.md describes each one.
public enum EventTopic: String, CaseIterable, Sendable {
    case contentPublished = "content.published"
    case contentEvicted = "content.evicted"
    case contentWithdrawn = "content.withdrawn"
    case requestReceived = "request.received"
    case requestRetried = "request.retried"
    case requestRejected = "request.rejected"
    case matchFound = "match.found"
    case matchNone = "match.none"
    case matchFailed = "match.failed"
    case holdingsUpdated = "holdings.updated"
    case senderExcluded = "sender.excluded"
    case sessionBrokered = "session.brokered"
    case sessionResent = "session.resent"
    case sessionOriginDirected = "session.origin"
    case sessionRepathed = "session.repathed"
    case sessionClosed = "session.closed"
    case sessionFailed = "session.failed"
    case linkSpawned = "link.spawned"
    case linkClosed = "link.closed"
    case linkDropped = "link.dropped"
    case linkRefused = "link.refused"
    case linkThrottled = "link.throttled"
    case linkQuotaExceeded = "link.quota_exceeded"
    case relayJoined = "relay.joined"
    case relayLost = "relay.lost"
    case relayDraining = "relay.draining"
    case deviceJoined = "device.joined"
    case deviceLost = "device.lost"
    case deviceBanned = "device.banned"
    case deviceEnrolled = "device.enrolled"
    case deviceRevoked = "device.revoked"
    case tokenCreated = "token.created"
    case tokenRevoked = "token.revoked"
    case transferStarted = "transfer.started"
    case transferProgress = "transfer.progress"
    case transferChunkRejected = "transfer.chunk_rejected"
    case transferCompleted = "transfer.completed"
    case transferFailed = "transfer.failed"
    case fulfilmentRecorded = "fulfilment.recorded"
    case fulfilmentDuplicate = "fulfilment.duplicate"
    case fulfilmentAcknowledged = "fulfilment.acknowledged"
    case fulfilmentDeliveryFailed = "fulfilment.delivery_failed"
    case fulfilmentRejected = "fulfilment.rejected"
    case messageDropped = "message.dropped"
    case transportRefused = "transport.refused"
}

/// The kinds of publisher on the event stream: an event's `publisher` names one, alone
/// (`broker`), with an id (`agent:ID`, `relay:ID`) or with a part (`reporter.outbox`).
public enum EventPublisherKind: String, CaseIterable, Sendable {
    case origin, intake, matcher, broker, relay, agent, reporter, eventbus

    public init?(publisher: String) {
        guard let end = publisher.firstIndex(where: { $0 == ":" || $0 == "." }) else {
            self.init(rawValue: publisher)
            return
        }
        self.init(rawValue: String(publisher[..<end]))
    }
}

extension EventTopic {
    /// Who may publish each topic. With transport keys the event bus drops any other
    /// publisher's event on it, so a device can't put `fulfilment.recorded` on the status page.
    /// docs/events.md's publisher column says the same (a test compares them).
    public var publishers: Set<EventPublisherKind> {
        switch self {
        case .contentPublished, .contentWithdrawn, .deviceEnrolled, .deviceRevoked, .tokenCreated, .tokenRevoked: [.origin]
        case .contentEvicted, .linkRefused, .transferStarted, .transferProgress, .transferChunkRejected, .transferCompleted,
             .transferFailed: [.agent]
        case .requestReceived, .requestRetried: [.intake]
        case .requestRejected: [.intake, .origin]
        case .matchFound, .matchNone, .matchFailed, .holdingsUpdated, .senderExcluded: [.matcher]
        case .sessionBrokered, .sessionResent, .sessionOriginDirected, .sessionRepathed, .sessionClosed, .sessionFailed,
             .relayJoined, .relayLost, .relayDraining, .deviceJoined, .deviceBanned: [.broker]
        case .deviceLost: [.broker, .matcher]
        case .linkSpawned, .linkClosed: [.relay, .agent]
        case .linkDropped, .linkThrottled, .linkQuotaExceeded: [.relay]
        case .fulfilmentRecorded, .fulfilmentDuplicate, .fulfilmentRejected, .fulfilmentAcknowledged, .fulfilmentDeliveryFailed: [.reporter]
        case .messageDropped: [.matcher, .broker, .reporter, .origin]
        case .transportRefused: [.intake, .matcher, .broker, .reporter, .relay, .eventbus]
        }
    }
}
