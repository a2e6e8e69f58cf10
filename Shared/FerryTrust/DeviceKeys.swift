import Crypto
import FerryProtocol
import Foundation

/// A device's own key pairs, made on first start (or by `ferry keys`) and kept, mode 0600, in its
/// data directory: Ed25519 to sign its requests to the origin, X25519 for keys wrapped for it.
public struct DeviceKeys: Sendable {
    let signingRaw: Data
    let agreementRaw: Data

    public static let fileName = "device.keys"
    /// A relay's pair, kept the same way.
    public static let relayFileName = "relay.keys"

    struct Saved: Codable {
        var signing: String
        var agreement: String
    }

    /// A relay keeps its pair the same way, in `relayFileName`.
    public static func loadOrCreate(directory: URL, fileName: String = DeviceKeys.fileName) throws -> DeviceKeys {
        let url = directory.appendingPathComponent(fileName)
        if let data = try? Data(contentsOf: url) {
            guard let saved = try? JSONDecoder().decode(Saved.self, from: data),
                  let signing = Data(base64Encoded: saved.signing), let agreement = Data(base64Encoded: saved.agreement),
                  (try? Curve25519.Signing.PrivateKey(rawRepresentation: signing)) != nil,
                  (try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: agreement)) != nil else {
                // Never replaced silently: the device is enrolled under these keys.
                throw TrustError.io("\(url.path) is not a device key file; move it away to make new keys (and enrol again)")
            }
            return DeviceKeys(signingRaw: signing, agreementRaw: agreement)
        }
        let keys = DeviceKeys(signingRaw: Curve25519.Signing.PrivateKey().rawRepresentation,
                              agreementRaw: Curve25519.KeyAgreement.PrivateKey().rawRepresentation)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let body = try JSONEncoder().encode(Saved(signing: keys.signingRaw.base64EncodedString(), agreement: keys.agreementRaw.base64EncodedString()))
        guard FileManager.default.createFile(atPath: url.path, contents: body, attributes: [.posixPermissions: 0o600]) else {
            throw TrustError.io("cannot write device keys to \(url.path)")
        }
        return keys
    }

    public var signingPublicKey: String {
        try! Curve25519.Signing.PrivateKey(rawRepresentation: signingRaw).publicKey.rawRepresentation.base64EncodedString()
    }

    /// The X25519 secret, raw: it is also the party's CurveZMQ secret key.
    public var agreementSecretKey: Data { agreementRaw }

    public var agreementPublicKey: String {
        try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: agreementRaw).publicKey.rawRepresentation.base64EncodedString()
    }

    /// The `Authorization` header value for one request to the origin (see `DeviceRequestAuth`):
    /// `range` is the request's `Range` header, `body` its body; each call has a fresh nonce.
    public func authorization(deviceId: DeviceID, method: String, path: String, range: String? = nil, body: Data = Data(),
                              nowMilliseconds: Int64) throws -> String {
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: signingRaw)
        let nonce = SymmetricKey(size: .bits128).withUnsafeBytes { Hex.encode($0) }
        let signature = try key.signature(for: DeviceRequestAuth.signedBytes(
            deviceId: deviceId.rawValue, method: method, path: path, timestamp: nowMilliseconds, nonce: nonce, range: range, body: body))
        return "\(DeviceRequestAuth.scheme) id=\(deviceId.rawValue),ts=\(nowMilliseconds),nonce=\(nonce),sig=\(signature.base64EncodedString())"
    }
}

/// How a device proves to the origin that a request is its own: `Authorization: Ferry-Device
/// id=<device id>,ts=<ms since epoch>,nonce=<32 hex digits>,sig=<base64 Ed25519>` over the
/// device id, method, path (with query), time, nonce, `Range` header and the body's SHA-256.
/// The origin takes it within `skew` of its own clock, and each nonce once.
public enum DeviceRequestAuth {
    public static let scheme = "Ferry-Device"
    public static let skewMilliseconds: Int64 = 300_000

    static func signedBytes(deviceId: String, method: String, path: String, timestamp: Int64, nonce: String, range: String?,
                            body: Data) -> Data {
        let bodyHash = Hex.encode(SHA256.hash(data: body))
        return Data("ferry-device-request-v2\n\(deviceId)\n\(method)\n\(path)\n\(timestamp)\n\(nonce)\n\(range ?? "")\n\(bodyHash)".utf8)
    }

    public struct Claim: Sendable, Equatable {
        public var deviceId: String
        public var timestamp: Int64
        public var nonce: String
        public var signature: Data
    }

    /// The parts of a header, or nil when it isn't one of these.
    public static func parse(_ header: String) -> Claim? {
        guard header.hasPrefix(scheme + " "), header.utf8.count < 1024 else { return nil }
        var fields: [Substring: Substring] = [:]
        for part in header.dropFirst(scheme.count + 1).split(separator: ",") {
            guard let equals = part.firstIndex(of: "=") else { return nil }
            fields[part[..<equals]] = part[part.index(after: equals)...]
        }
        guard let id = fields["id"], let ts = fields["ts"].flatMap({ Int64($0) }),
              let nonce = fields["nonce"], nonce.utf8.count == 32, nonce.allSatisfy(\.isHexDigit),
              let sig = fields["sig"].flatMap({ Data(base64Encoded: String($0)) }) else { return nil }
        return Claim(deviceId: String(id), timestamp: ts, nonce: String(nonce), signature: sig)
    }

    /// Throws `TrustError.badToken` unless `claim` is signed by `signingKey` for this request, in time.
    public static func verify(_ claim: Claim, signingKey: String, method: String, path: String, range: String? = nil, body: Data = Data(),
                              nowMilliseconds: Int64) throws {
        guard abs(nowMilliseconds - claim.timestamp) <= skewMilliseconds else { throw TrustError.badToken("request time too far from the origin's clock") }
        let key = try VerifyingKey(base64: signingKey)
        guard key.isValid(claim.signature, for: signedBytes(deviceId: claim.deviceId, method: method, path: path, timestamp: claim.timestamp,
                                                            nonce: claim.nonce, range: range, body: body)) else {
            throw TrustError.badToken("bad request signature")
        }
    }
}
