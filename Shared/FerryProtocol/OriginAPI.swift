import Foundation

// The origin's HTTP API, JSON bodies. docs/protocol.md lists the routes.

/// `POST /v1/requests`: a device asks the origin for content.
public struct DeviceRequest: Codable, Sendable, Equatable {
    /// Chosen by the device so a retry is recognised as the same request; made up when absent.
    public var requestId: RequestID?
    public var deviceId: DeviceID
    public var contentId: ContentID
    public init(requestId: RequestID?, deviceId: DeviceID, contentId: ContentID) {
        self.requestId = requestId
        self.deviceId = deviceId
        self.contentId = contentId
    }
}

/// The origin's answer to `POST /v1/requests` (202): Ferry will arrange delivery.
public struct RequestAccepted: Codable, Sendable, Equatable {
    public var requestId: RequestID
    public var content: ContentSummary
    public init(requestId: RequestID, content: ContentSummary) {
        self.requestId = requestId
        self.content = content
    }
}

/// The origin's answer to `DELETE /v1/content/{id}`.
public struct ContentWithdrawalResult: Codable, Sendable, Equatable {
    public var contentId: ContentID
    /// False when intake could not be reached: the origin no longer serves the content, but
    /// devices keep their copies until Ferry hears of it.
    public var ferryTold: Bool
    public init(contentId: ContentID, ferryTold: Bool) {
        self.contentId = contentId
        self.ferryTold = ferryTold
    }
}

/// `GET /v1/stats`: what Ferry took off the origin, over every recorded fulfilment.
public struct OriginStats: Codable, Sendable, Equatable {
    public var fulfilments: Int
    public var bytesFromPeers: UInt64
    public var bytesFromOrigin: UInt64
    /// Share of delivered bytes that came from peers, 0...1.
    public var offloadRatio: Double
    public init(fulfilments: Int, bytesFromPeers: UInt64, bytesFromOrigin: UInt64) {
        self.fulfilments = fulfilments
        self.bytesFromPeers = bytesFromPeers
        self.bytesFromOrigin = bytesFromOrigin
        let total = bytesFromPeers + bytesFromOrigin
        offloadRatio = total > 0 ? Double(bytesFromPeers) / Double(total) : 0
    }
}

/// Every error answer from the origin.
public struct ErrorBody: Codable, Sendable, Equatable {
    /// A stable machine-readable reason, e.g. `unknown-content`.
    public var reason: String
    public var error: String
    public init(reason: String, error: String) {
        self.reason = reason
        self.error = error
    }
}

/// `POST /v1/devices`: a device (or relay) enrols its public keys with a join token the
/// operator made (`ferry tokens create`). The token decides the kind it enrols as, and, when
/// it names one, the id.
public struct DeviceEnrolment: Codable, Sendable, Equatable {
    /// A device's id, or a relay's (relays enrol the same way, as `kind: relay`).
    public var deviceId: DeviceID
    /// Base64 Ed25519: the device signs its requests to the origin with it.
    public var signingKey: String
    /// Base64 X25519: keys are wrapped for the device with it.
    public var agreementKey: String
    /// The join token, `FJT1.<token id>.<secret>`.
    public var token: String
    /// Absent means a device; it must be the token's kind. A relay is admitted to the broker
    /// and devices' links, never to content or its keys.
    public var kind: PartyKind?
    public init(deviceId: DeviceID, signingKey: String, agreementKey: String, token: String, kind: PartyKind? = nil) {
        self.kind = kind
        self.deviceId = deviceId
        self.signingKey = signingKey
        self.agreementKey = agreementKey
        self.token = token
    }
}

/// `POST /v1/tokens` (operator): a join token to make.
public struct JoinTokenRequest: Codable, Sendable, Equatable {
    public var kind: PartyKind
    /// Only this id may enrol with it; nil: any id not reserved for another token or named by an allow list.
    public var partyId: DeviceID?
    /// How many parties may enrol with it; nil: any number (replicas of a scaled service share one).
    public var uses: Int?
    /// Seconds from now until it stops working; nil: never.
    public var expiresInSeconds: Int?
    public init(kind: PartyKind, partyId: DeviceID? = nil, uses: Int? = nil, expiresInSeconds: Int? = nil) {
        self.kind = kind
        self.partyId = partyId
        self.uses = uses
        self.expiresInSeconds = expiresInSeconds
    }
}

/// A join token as the origin keeps it (`GET /v1/tokens`): everything but its secret.
public struct JoinTokenInfo: Codable, Sendable, Equatable {
    public var tokenId: String
    public var kind: PartyKind
    public var partyId: DeviceID?
    /// Enrolments it still allows; nil: no limit.
    public var usesLeft: Int?
    public var expiresAt: String?
    public var createdAt: String
    public var revokedAt: String?
    /// How many parties enrolled with it.
    public var enrolled: Int
    public init(tokenId: String, kind: PartyKind, partyId: DeviceID?, usesLeft: Int?, expiresAt: String?, createdAt: String,
                revokedAt: String?, enrolled: Int) {
        self.tokenId = tokenId
        self.kind = kind
        self.partyId = partyId
        self.usesLeft = usesLeft
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.revokedAt = revokedAt
        self.enrolled = enrolled
    }
}

/// The answer to `POST /v1/tokens` (201): the token itself, shown this once.
public struct IssuedJoinToken: Codable, Sendable, Equatable {
    public var token: String
    public var info: JoinTokenInfo
    public init(token: String, info: JoinTokenInfo) {
        self.token = token
        self.info = info
    }
}

/// A device as the origin's registry holds it (`GET /v1/devices`, `ferry devices`).
public struct EnrolledDevice: Codable, Sendable, Equatable {
    public var deviceId: DeviceID
    public var signingKey: String
    public var agreementKey: String
    public var enrolledAt: String
    /// Set once revoked: every request of the device is refused from then on.
    public var revokedAt: String?
    public var kind: PartyKind
    /// The join token it enrolled with; nil for a party enrolled before join tokens.
    public var tokenId: String?
    public init(deviceId: DeviceID, signingKey: String, agreementKey: String, enrolledAt: String, revokedAt: String?,
                kind: PartyKind = .device, tokenId: String? = nil) {
        self.kind = kind
        self.tokenId = tokenId
        self.deviceId = deviceId
        self.signingKey = signingKey
        self.agreementKey = agreementKey
        self.enrolledAt = enrolledAt
        self.revokedAt = revokedAt
    }
}

/// `GET /v1/content/{id}/key`: the content's key, wrapped for the asking device's X25519 key.
public struct WrappedContentKey: Codable, Sendable, Equatable {
    public var contentId: ContentID
    /// Base64 X25519 public key of the one-off key pair the origin wrapped with.
    public var ephemeralKey: String
    /// Base64 ChaChaPoly combined box (nonce, ciphertext, tag) of the 32-byte content key.
    public var sealedKey: String
    /// The origin's Ed25519 signature (base64) over the wrapping and the device it is for (see
    /// `KeyWrap.signedBytes`): anyone can wrap a key for a device's public key, only the origin
    /// can sign it.
    public var signature: String?
    public init(contentId: ContentID, ephemeralKey: String, sealedKey: String, signature: String? = nil) {
        self.contentId = contentId
        self.ephemeralKey = ephemeralKey
        self.sealedKey = sealedKey
        self.signature = signature
    }
}

/// What an enrolled party is.
public enum PartyKind: String, Codable, Sendable {
    case device, relay
}

/// `GET /v1/transport-keys/{hex key}`: the origin's word that a CURVE key (a party's X25519
/// key) belongs to an enrolled, unrevoked party. Services ask it before letting the key in.
public struct TransportKeyAnswer: Codable, Sendable, Equatable {
    /// Base64 of the 32-byte key asked about.
    public var key: String
    public var kind: PartyKind
    public var id: String
    /// Milliseconds since the epoch: an answer is believed for a short while only.
    public var issuedAt: Int64
    public init(key: String, kind: PartyKind, id: String, issuedAt: Int64) {
        self.key = key
        self.kind = kind
        self.id = id
        self.issuedAt = issuedAt
    }
}

/// A `TransportKeyAnswer` as sent: its JSON, base64, and the origin's Ed25519 signature of
/// those exact bytes, so no re-encoding can change what was signed.
public struct SignedTransportKeyAnswer: Codable, Sendable, Equatable {
    public var answer: String
    public var signature: String
    public init(answer: String, signature: String) {
        self.answer = answer
        self.signature = signature
    }
}

/// Why the origin refused an enrolment (`POST /v1/devices`): the `reason` of its error body.
public enum EnrolmentRefusal: String, Codable, Sendable, CaseIterable {
    /// No such token, or not its secret.
    case badToken = "bad-token"
    case tokenRevoked = "token-revoked"
    case tokenExpired = "token-expired"
    case tokenUsedUp = "token-used-up"
    /// The token enrols another kind of party (a device token can't enrol a relay).
    case tokenKind = "token-kind"
    /// The token names another id.
    case tokenId = "token-id"
    /// Another token reserves this id, or an allow list names it: only a token naming it enrols it.
    case idReserved = "id-reserved"
    case deviceRevoked = "device-revoked"
    /// A key of a revoked party, under a new id.
    case keyRevoked = "key-revoked"
    /// The id is enrolled with other keys, or the key with another id.
    case keysDiffer = "device-keys-differ"

    public var status: Int {
        switch self {
        case .badToken: 401
        case .keysDiffer: 409
        default: 403
        }
    }

    public var explanation: String {
        switch self {
        case .badToken: "not a join token this origin issued (ferry tokens create)"
        case .tokenRevoked: "the join token was revoked"
        case .tokenExpired: "the join token has expired"
        case .tokenUsedUp: "the join token has no uses left"
        case .tokenKind: "the join token enrols another kind of party"
        case .tokenId: "the join token is for another id"
        case .idReserved: "this id is reserved for a token naming it, or named by an allow list"
        case .deviceRevoked: "this id was revoked"
        case .keyRevoked: "these keys belong to a revoked party"
        case .keysDiffer: "this id is enrolled with other keys, or these keys with another id"
        }
    }
}

/// What the audit trail records: each change to who may take part and what they may get.
/// The raw values are the event topics the origin publishes for each.
public enum AuditAction: String, Codable, Sendable, CaseIterable {
    case deviceEnrolled = "device.enrolled"
    case deviceRevoked = "device.revoked"
    case tokenCreated = "token.created"
    case tokenRevoked = "token.revoked"
    case contentPublished = "content.published"
    case contentWithdrawn = "content.withdrawn"
}

/// One entry of the origin's audit trail (`GET /v1/audit`, `ferry audit`): who changed what,
/// when, and from where.
public struct AuditEntry: Codable, Sendable, Equatable {
    /// Rises by one an entry, in the order the changes were made.
    public var seq: Int64
    public var at: String
    public var action: AuditAction
    /// The party, token or content the change was made to.
    public var subject: String
    /// `operator` (the operator token), `token:ID` (an enrolment, by the join token it
    /// spent), or `origin` (the origin itself, such as a standing token made at start).
    public var actor: String
    /// The address the change was asked from; nil when the origin made it itself.
    public var address: String?
    /// What else the change was: a party's kind, a token's limits, a content's name and audience.
    public var detail: [String: JSONValue]
    public init(seq: Int64, at: String, action: AuditAction, subject: String, actor: String, address: String?,
                detail: [String: JSONValue]) {
        self.seq = seq
        self.at = at
        self.action = action
        self.subject = subject
        self.actor = actor
        self.address = address
        self.detail = detail
    }
}

extension AuditAction {
    /// The event the origin publishes for each entry.
    public var topic: EventTopic {
        switch self {
        case .deviceEnrolled: .deviceEnrolled
        case .deviceRevoked: .deviceRevoked
        case .tokenCreated: .tokenCreated
        case .tokenRevoked: .tokenRevoked
        case .contentPublished: .contentPublished
        case .contentWithdrawn: .contentWithdrawn
        }
    }
}
