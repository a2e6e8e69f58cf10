import Crypto
import FerryProtocol
import Foundation

/// A join token as a party shows it: `FJT1.<id>.<secret>`. The id names the token in lists
/// and audit; the origin keeps only the secret's SHA-256, so its store can't be replayed as tokens.
public struct JoinToken: Sendable, Equatable {
    public static let prefix = "FJT1"
    public let id: String
    public let secret: String

    public static func make() -> JoinToken {
        func random(_ bytes: Int) -> Data { SymmetricKey(size: SymmetricKeySize(bitCount: bytes * 8)).withUnsafeBytes { Data($0) } }
        let id = Hex.encode(random(6))
        let secret = random(32).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return JoinToken(id: id, secret: secret)
    }

    init(id: String, secret: String) {
        self.id = id
        self.secret = secret
    }

    /// Nil unless `text` has the token's shape (surrounding white space is ignored).
    public init?(parsing text: String) {
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == Self.prefix, parts[1].utf8.count == 12, parts[1].allSatisfy(\.isHexDigit),
              (32...64).contains(parts[2].utf8.count) else { return nil }
        self.init(id: String(parts[1]), secret: String(parts[2]))
    }

    public var text: String { "\(Self.prefix).\(id).\(secret)" }

    public var secretHash: String { Self.hash(secret) }

    static func hash(_ secret: String) -> String {
        Hex.encode(SHA256.hash(data: Data(secret.utf8)))
    }

    /// Whether this token's secret is the one whose hash the origin stored, compared in constant time.
    public func matches(storedHash: String) -> Bool {
        let offered = Array(secretHash.utf8), expected = Array(storedHash.utf8)
        guard offered.count == expected.count else { return false }
        return zip(offered, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
