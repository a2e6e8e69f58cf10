import FerryProtocol
import Foundation

/// Session tokens: the broker signs a `SessionGrant` for each party of a session; the relay
/// forwards a party's packets only once it has attached with a token that checks out.
public enum SessionTokens {
    public static func issue(_ grant: SessionGrant, with key: SigningKey) throws -> SessionToken {
        let bytes = try JSONCoding.encoder.encode(grant)
        return SessionToken(grant: bytes.base64EncodedString(), signature: try key.signature(for: bytes).base64EncodedString())
    }

    /// The grant, if the token is signed by `key`, is for this session, relay, address and role,
    /// and has not expired; otherwise `TrustError.badToken` saying which check failed.
    public static func check(_ token: SessionToken, key: VerifyingKey, session: SessionID, relay: RelayID, address: String,
                             role: SessionRole, nowMilliseconds: Int64) throws -> SessionGrant {
        guard let bytes = Data(base64Encoded: token.grant), bytes.count <= 4096,
              let signature = Data(base64Encoded: token.signature) else { throw TrustError.badToken("not base64") }
        guard key.isValid(signature, for: bytes) else { throw TrustError.badToken("bad signature") }
        guard let grant = try? JSONCoding.decoder.decode(SessionGrant.self, from: bytes) else { throw TrustError.badToken("grant unreadable") }
        guard grant.sessionId == session, grant.relayId == relay else { throw TrustError.badToken("for another session or relay") }
        guard grant.address == address, grant.role == role else { throw TrustError.badToken("for another party") }
        guard grant.expiresAt > nowMilliseconds else { throw TrustError.badToken("expired") }
        return grant
    }

    public static func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
