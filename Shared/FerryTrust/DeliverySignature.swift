import Crypto
import FerryProtocol
import Foundation

/// How the reporter proves that a fulfilment it delivers is its own: a header
/// `Ferry-Reporter: ts=<ms since epoch>,sig=<base64 Ed25519>` over the domain string, the time
/// and the body's SHA-256, made with the fleet's `reporter-signing` key. The server takes it
/// within `skewMilliseconds` of its own clock. A replay inside that window re-posts the same
/// signed fulfilment, which the server records once by its request id.
public enum DeliverySignature {
    public static let header = "Ferry-Reporter"
    public static let skewMilliseconds: Int64 = 300_000

    /// What is signed: `ferry-fulfilment-v1\n<ts>\n<hex sha256 of the body>`.
    public static func signedBytes(body: Data, timestamp: Int64) -> Data {
        let digest = Hex.encode(SHA256.hash(data: body))
        return Data("ferry-fulfilment-v1\n\(timestamp)\n\(digest)".utf8)
    }

    /// The header's value for `body`, signed now.
    public static func sign(_ body: Data, with key: SigningKey, nowMilliseconds: Int64) throws -> String {
        "ts=\(nowMilliseconds),sig=\(try key.signature(for: signedBytes(body: body, timestamp: nowMilliseconds)).base64EncodedString())"
    }

    /// Throws `TrustError.badToken` unless `header` signs `body` under `key`, in time.
    public static func verify(_ header: String?, body: Data, key: VerifyingKey, nowMilliseconds: Int64) throws {
        guard let header, header.utf8.count < 512 else { throw TrustError.badToken("no \(Self.header) signature") }
        var fields: [Substring: Substring] = [:]
        for part in header.split(separator: ",") {
            guard let equals = part.firstIndex(of: "=") else { throw TrustError.badToken("malformed \(Self.header) header") }
            fields[part[..<equals]] = part[part.index(after: equals)...]
        }
        guard let timestamp = fields["ts"].flatMap({ Int64($0) }), let signature = fields["sig"].flatMap({ Data(base64Encoded: String($0)) }) else {
            throw TrustError.badToken("malformed \(Self.header) header")
        }
        guard abs(nowMilliseconds - timestamp) <= skewMilliseconds else { throw TrustError.badToken("delivery time too far from this server's clock") }
        guard key.isValid(signature, for: signedBytes(body: body, timestamp: timestamp)) else {
            throw TrustError.badToken("the signature is not the reporter's")
        }
    }
}
