import Crypto
import Foundation

/// The origin's manifest-signing key (Ed25519): made on first start and kept, mode 0600, in its
/// data directory. Devices are given the public half in their configuration, never over the
/// network. Holds the raw bytes, so it can be shared by request handlers on any thread.
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
            throw ContentError.io("cannot write the signing key to \(url.path)")
        }
        return SigningKey(raw: raw)
    }

    var privateKey: Curve25519.Signing.PrivateKey { try! Curve25519.Signing.PrivateKey(rawRepresentation: raw) }

    /// The public half, base64, as devices are configured with it.
    public var publicKey: String { privateKey.publicKey.rawRepresentation.base64EncodedString() }

    public static func random() -> SigningKey { SigningKey(raw: Curve25519.Signing.PrivateKey().rawRepresentation) }
}
