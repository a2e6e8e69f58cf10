import Crypto
import Foundation

/// An Ed25519 signing key. The origin keeps one for manifests (made on first start, mode 0600,
/// in its data directory; devices are given the public half in their configuration); the broker
/// makes one each start for session tokens. Holds the raw bytes, so it can be shared by request
/// handlers on any thread.
public struct SigningKey: Sendable {
    let raw: Data

    public static func loadOrCreate(at url: URL) throws -> SigningKey {
        if let saved = try? Data(contentsOf: url),
           let raw = Data(base64Encoded: String(decoding: saved, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
           (try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)) != nil {
            return SigningKey(raw: raw)
        }
        let raw = Curve25519.Signing.PrivateKey().rawRepresentation
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: url.path, contents: Data(raw.base64EncodedString().utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw TrustError.io("cannot write the signing key to \(url.path)")
        }
        return SigningKey(raw: raw)
    }

    var privateKey: Curve25519.Signing.PrivateKey { try! Curve25519.Signing.PrivateKey(rawRepresentation: raw) }

    /// The public half, base64, as it is configured or announced.
    public var publicKey: String { privateKey.publicKey.rawRepresentation.base64EncodedString() }

    public static func random() -> SigningKey { SigningKey(raw: Curve25519.Signing.PrivateKey().rawRepresentation) }

    public func signature(for data: Data) throws -> Data { try privateKey.signature(for: data) }
}

/// Checks Ed25519 signatures against a public key given as base64. Holds the raw bytes, like
/// `SigningKey`, so it is Sendable.
public struct VerifyingKey: Sendable {
    let raw: Data

    public init(base64 text: String) throws {
        guard let raw = Data(base64Encoded: text), (try? Curve25519.Signing.PublicKey(rawRepresentation: raw)) != nil else {
            throw TrustError.badKey
        }
        self.raw = raw
    }

    public func isValid(_ signature: Data, for data: Data) -> Bool {
        (try? Curve25519.Signing.PublicKey(rawRepresentation: raw))?.isValidSignature(signature, for: data) ?? false
    }
}

public enum TrustError: Error, CustomStringConvertible, Equatable {
    case badKey
    case io(String)
    case badToken(String)

    public var description: String {
        switch self {
        case .badKey: "not a base64 Ed25519 public key"
        case .io(let detail): detail
        case .badToken(let why): "session token refused: \(why)"
        }
    }
}
