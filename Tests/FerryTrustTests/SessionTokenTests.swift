import FerryProtocol
import FerryTrust
import Foundation
import Testing

@Suite struct SessionTokenChecks {
    let key = SigningKey.random()
    let session = SessionID(42)
    let relay = try! RelayID("relay-1")
    var grant: SessionGrant { SessionGrant(sessionId: session, relayId: relay, address: "100.96.0.1", role: .receiver, expiresAt: 2_000) }

    func check(_ token: SessionToken, key: SigningKey? = nil, session: SessionID? = nil, address: String = "100.96.0.1",
               role: SessionRole = .receiver, now: Int64 = 1_000) throws -> SessionGrant {
        try SessionTokens.check(token, key: try VerifyingKey(base64: (key ?? self.key).publicKey), session: session ?? self.session,
                                relay: relay, address: address, role: role, nowMilliseconds: now)
    }

    @Test func aTokenForThisPartyChecksOut() throws {
        let token = try SessionTokens.issue(grant, with: key)
        #expect(try check(token) == grant)
        // It travels inside the attach payload as JSON.
        let attach = LinkAttach(role: .receiver, want: [], token: token)
        #expect(try JSONCoding.decoder.decode(LinkAttach.self, from: JSONCoding.encoder.encode(attach)) == attach)
    }

    @Test func everyCheckRefusesWhatItShould() throws {
        let token = try SessionTokens.issue(grant, with: key)
        #expect(throws: TrustError.badToken("bad signature")) { try check(token, key: SigningKey.random()) }
        #expect(throws: TrustError.badToken("for another session or relay")) { try check(token, session: SessionID(43)) }
        #expect(throws: TrustError.badToken("for another party")) { try check(token, address: "100.96.0.2") }
        #expect(throws: TrustError.badToken("for another party")) { try check(token, role: .sender) }
        #expect(throws: TrustError.badToken("expired")) { try check(token, now: 2_000) }
        #expect(throws: TrustError.badToken("not base64")) { try check(SessionToken(grant: "%%%", signature: token.signature)) }
    }

    /// A party can't widen its own grant: any change to the signed bytes breaks the signature.
    @Test func aTamperedGrantIsRefused() throws {
        let token = try SessionTokens.issue(grant, with: key)
        var widened = grant
        widened.expiresAt = .max
        let forged = SessionToken(grant: try JSONCoding.encoder.encode(widened).base64EncodedString(), signature: token.signature)
        #expect(throws: TrustError.badToken("bad signature")) { try check(forged) }
        var flipped = Data(base64Encoded: token.grant)!
        flipped[flipped.count / 2] ^= 1
        #expect(throws: TrustError.self) { try check(SessionToken(grant: flipped.base64EncodedString(), signature: token.signature)) }
    }

    @Test func aKeyThatIsNotAKeyIsRefused() {
        #expect(throws: TrustError.badKey) { try VerifyingKey(base64: "not a key") }
        #expect(throws: TrustError.badKey) { try VerifyingKey(base64: Data(repeating: 1, count: 31).base64EncodedString()) }
    }
}
