import Foundation

// Step (i): completions and the records the reporter checks them against (PUSH/PULL into the
// reporter), and the fulfilment the reporter delivers to the server (HTTP).

public enum SourceKind: String, Codable, Sendable {
    case peer, origin
    /// Verified by an earlier, interrupted attempt of this device and kept on disk.
    case local
}

/// Bytes of one download that came from one place.
public struct SourceBytes: Codable, Sendable, Equatable {
    public var kind: SourceKind
    /// The sending device, for `peer`.
    public var device: DeviceID?
    public var sessionId: SessionID?
    public var bytes: UInt64
    public init(kind: SourceKind, device: DeviceID? = nil, sessionId: SessionID? = nil, bytes: UInt64) {
        self.kind = kind
        self.device = device
        self.sessionId = sessionId
        self.bytes = bytes
    }
}

/// A device finished a download and verified every chunk.
public struct Completion: WireMessage {
    public static let kind = "completion"
    public var requestId: RequestID
    public var deviceId: DeviceID
    public var contentId: ContentID
    public var size: UInt64
    public var sources: [SourceBytes]
    public var startedAt: String
    public var finishedAt: String

    public init(requestId: RequestID, deviceId: DeviceID, contentId: ContentID, size: UInt64, sources: [SourceBytes],
                startedAt: String, finishedAt: String) {
        self.requestId = requestId
        self.deviceId = deviceId
        self.contentId = contentId
        self.size = size
        self.sources = sources
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    public func validate() throws {
        // Checked sums: every later addition of these numbers (the reporter's, Prometheus's)
        // may then assume they fit.
        var total: UInt64 = 0
        for source in sources {
            let (sum, overflow) = total.addingReportingOverflow(source.bytes)
            guard !overflow, source.bytes <= size, size <= UInt64(Int64.max) else { throw WireError.invalid("source byte counts out of range") }
            total = sum
        }
        guard total == size else { throw WireError.invalid("sources account for \(total) of \(size) bytes") }
        for source in sources where source.kind == .peer && source.device == nil {
            throw WireError.invalid("a peer source must name its device")
        }
    }
}

/// One session brokered for a request, as the broker saw it.
public struct SessionRecord: Codable, Sendable, Equatable {
    public var sessionId: SessionID
    public var sender: DeviceID
    public var relays: [RelayID]
    /// The broker will learn nothing more about it.
    public var closed: Bool
    /// Payload bytes the last relay on the path forwarded to the receiver; nil if the relay
    /// never reported (it was killed, or the session is still open).
    public var relayPayloadBytes: UInt64?
    /// Payload bytes the sender says it sent: the only witness left when the relay's count died with it.
    public var senderPayloadBytes: UInt64?
    /// The relay was the sender's own forwarding relay: its count is the sender's word.
    public var forwardedBySender: Bool?

    public init(sessionId: SessionID, sender: DeviceID, relays: [RelayID], closed: Bool, relayPayloadBytes: UInt64? = nil,
                senderPayloadBytes: UInt64? = nil, forwardedBySender: Bool? = nil) {
        self.forwardedBySender = forwardedBySender
        self.sessionId = sessionId
        self.sender = sender
        self.relays = relays
        self.closed = closed
        self.relayPayloadBytes = relayPayloadBytes
        self.senderPayloadBytes = senderPayloadBytes
    }
}

/// The broker's record of how it handled a request: sent when the plan is made and again
/// whenever one of its sessions opens or closes, each time whole. The reporter trusts these
/// over devices.
public struct RequestRecord: WireMessage {
    public static let kind = "request.record"

    public var requestId: RequestID
    public var deviceId: DeviceID
    public var contentId: ContentID
    public var server: String
    /// Every session brokered for the request, oldest first: more than one when a path broke
    /// and the broker gave the receiver a new one. Empty: the origin was told to serve it.
    public var sessions: [SessionRecord]

    public init(requestId: RequestID, deviceId: DeviceID, contentId: ContentID, server: String, sessions: [SessionRecord] = []) {
        self.requestId = requestId
        self.deviceId = deviceId
        self.contentId = contentId
        self.server = server
        self.sessions = sessions
    }

    public var isSettled: Bool { sessions.allSatisfy(\.closed) }

    public func validate() throws {
        guard sessions.count <= 64 else { throw WireError.invalid("more sessions than any request has") }
    }
}

/// How the reporter checked a completion before recording it.
public enum Verification: String, Codable, Sendable {
    /// Peer bytes agree with the relays' counts and the sender with the broker's session.
    case matched
    /// The device claimed more peer bytes than the relays carried; recorded at the relays' figure.
    case capped
    /// No session was involved (the origin served everything).
    case originOnly = "origin-only"
    /// A relay's count is missing for some session: its closing record never came (recorded as
    /// the device reported it), or the relay was killed (capped at what the sender says it sent).
    case unverified
}

/// Delivered to the server named in the request: `POST {server}/v1/fulfilments`.
public struct Fulfilment: Codable, Sendable, Equatable {
    public var requestId: RequestID
    public var deviceId: DeviceID
    public var contentId: ContentID
    public var size: UInt64
    public var bytesFromPeers: UInt64
    public var bytesFromOrigin: UInt64
    public var sources: [SourceBytes]
    public var verification: Verification
    public var recordedAt: String

    public init(requestId: RequestID, deviceId: DeviceID, contentId: ContentID, size: UInt64, bytesFromPeers: UInt64,
                bytesFromOrigin: UInt64, sources: [SourceBytes], verification: Verification, recordedAt: String) {
        self.requestId = requestId
        self.deviceId = deviceId
        self.contentId = contentId
        self.size = size
        self.bytesFromPeers = bytesFromPeers
        self.bytesFromOrigin = bytesFromOrigin
        self.sources = sources
        self.verification = verification
        self.recordedAt = recordedAt
    }
}

/// The server's answer to a delivered fulfilment; a repeat of the same request id is
/// acknowledged again with `duplicate: true` and recorded once.
public struct FulfilmentAck: Codable, Sendable, Equatable {
    public var requestId: RequestID
    public var duplicate: Bool
    public init(requestId: RequestID, duplicate: Bool) {
        self.requestId = requestId
        self.duplicate = duplicate
    }
}
