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

/// `POST /v1/devices`: a device enrols its public keys with the enrolment credential the
/// operator set.
public struct DeviceEnrolment: Codable, Sendable, Equatable {
    /// A device's id, or a relay's (relays enrol the same way, as `kind: relay`).
    public var deviceId: DeviceID
    /// Base64 Ed25519: the device signs its requests to the origin with it.
    public var signingKey: String
    /// Base64 X25519: keys are wrapped for the device with it.
    public var agreementKey: String
    public var credential: String
    /// Absent means a device. A relay is admitted to the broker and devices' links, never to
    /// content or its keys.
    public var kind: PartyKind?
    public init(deviceId: DeviceID, signingKey: String, agreementKey: String, credential: String, kind: PartyKind? = nil) {
        self.kind = kind
        self.deviceId = deviceId
        self.signingKey = signingKey
        self.agreementKey = agreementKey
        self.credential = credential
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
    public init(deviceId: DeviceID, signingKey: String, agreementKey: String, enrolledAt: String, revokedAt: String?,
                kind: PartyKind = .device) {
        self.kind = kind
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
    public init(contentId: ContentID, ephemeralKey: String, sealedKey: String) {
        self.contentId = contentId
        self.ephemeralKey = ephemeralKey
        self.sealedKey = sealedKey
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
