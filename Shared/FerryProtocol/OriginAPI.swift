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
    public var deviceId: DeviceID
    /// Base64 Ed25519: the device signs its requests to the origin with it.
    public var signingKey: String
    /// Base64 X25519: keys are wrapped for the device with it.
    public var agreementKey: String
    public var credential: String
    public init(deviceId: DeviceID, signingKey: String, agreementKey: String, credential: String) {
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
    public init(deviceId: DeviceID, signingKey: String, agreementKey: String, enrolledAt: String, revokedAt: String?) {
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
