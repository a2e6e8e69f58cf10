import Crypto
import Foundation

/// A secret the origin checks: the operator token that publishing, withdrawing, managing
/// devices and tokens, and reading the fleet's records need. Given in configuration, or made on
/// first start and kept, mode 0600, in a file: `ferry` on the origin's host finds it there.
public struct StoredSecret: Sendable {
    public let token: String

    public static let operatorTokenFile = "operator.token"

    /// `variable` names the setting in the error for a given secret too short to be one.
    public static func loadOrCreate(given: String?, file url: URL, variable: String) throws -> StoredSecret {
        if let given, !given.isEmpty {
            guard given.utf8.count >= 16 else { throw TrustError.io("\(variable) must be at least 16 characters") }
            return StoredSecret(token: given)
        }
        if let saved = read(at: url) { return StoredSecret(token: saved) }
        let token = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: url.path, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw TrustError.io("cannot write \(url.path)")
        }
        return StoredSecret(token: token)
    }

    /// The token saved at `url`, if there is one.
    public static func read(at url: URL) -> String? {
        guard let saved = try? String(contentsOf: url, encoding: .utf8) else { return nil }
        let token = saved.trimmingCharacters(in: .whitespacesAndNewlines)
        return token.isEmpty ? nil : token
    }

    /// Whether an `Authorization` header carries this token: as a Bearer token, or as the
    /// password of Basic authentication (any user name), so a browser can open the status page.
    public func admits(authorization: String?) -> Bool {
        guard let authorization else { return false }
        if authorization.hasPrefix("Bearer ") { return matches(String(authorization.dropFirst("Bearer ".count))) }
        guard authorization.hasPrefix("Basic "), authorization.utf8.count < 1024,
              let decoded = Data(base64Encoded: String(authorization.dropFirst("Basic ".count))),
              let pair = String(data: decoded, encoding: .utf8), let colon = pair.firstIndex(of: ":") else { return false }
        return matches(String(pair[pair.index(after: colon)...]))
    }

    /// Compared in constant time, so the answer's timing says nothing about how much of a guess
    /// was right.
    public func matches(_ offered: String) -> Bool {
        let offered = Array(offered.utf8), expected = Array(token.utf8)
        guard offered.count == expected.count else { return false }
        return zip(offered, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
