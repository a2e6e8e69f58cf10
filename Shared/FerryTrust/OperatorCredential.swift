import Crypto
import Foundation

/// The operator's credential at the origin: a bearer token that publishing and withdrawing
/// content need. Given in configuration, or made on first start and kept, mode 0600, in the
/// origin's data directory, where `ferry` on the same host finds it.
public struct OperatorCredential: Sendable {
    public let token: String

    public static let fileName = "operator.token"

    public static func loadOrCreate(given: String?, directory: URL) throws -> OperatorCredential {
        if let given, !given.isEmpty {
            guard given.utf8.count >= 16 else { throw TrustError.io("FERRY_OPERATOR_TOKEN must be at least 16 characters") }
            return OperatorCredential(token: given)
        }
        let url = directory.appendingPathComponent(fileName)
        if let saved = read(at: url) { return OperatorCredential(token: saved) }
        let token = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: url.path, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw TrustError.io("cannot write the operator token to \(url.path)")
        }
        return OperatorCredential(token: token)
    }

    /// The token saved at `url`, if there is one.
    public static func read(at url: URL) -> String? {
        guard let saved = try? String(contentsOf: url, encoding: .utf8) else { return nil }
        let token = saved.trimmingCharacters(in: .whitespacesAndNewlines)
        return token.isEmpty ? nil : token
    }

    /// Whether an `Authorization` header carries this token, compared in constant time so the
    /// answer's timing says nothing about how much of a guess was right.
    public func admits(authorization: String?) -> Bool {
        guard let authorization, authorization.hasPrefix("Bearer ") else { return false }
        let offered = Array(authorization.dropFirst("Bearer ".count).utf8), expected = Array(token.utf8)
        guard offered.count == expected.count else { return false }
        return zip(offered, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
