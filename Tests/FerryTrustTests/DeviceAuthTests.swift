import FerryProtocol
import FerryTrust
import Foundation
import Testing

@Suite struct DeviceRequestSignatures {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-keys-\(UUID().uuidString)")
    let device = try! DeviceID("dev-a")

    @Test func keysAreMadeOnceAndKept() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let keys = try DeviceKeys.loadOrCreate(directory: directory)
        let again = try DeviceKeys.loadOrCreate(directory: directory)
        #expect(again.signingPublicKey == keys.signingPublicKey && again.agreementPublicKey == keys.agreementPublicKey)
        #expect(Data(base64Encoded: keys.agreementPublicKey)?.count == 32)
        // A damaged key file stops the device rather than being replaced under its enrolment.
        try Data("{}".utf8).write(to: directory.appendingPathComponent(DeviceKeys.fileName))
        #expect(throws: TrustError.self) { try DeviceKeys.loadOrCreate(directory: directory) }
    }

    @Test func aSignedRequestChecksOutOnlyAsSigned() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let keys = try DeviceKeys.loadOrCreate(directory: directory)
        let header = try keys.authorization(deviceId: device, method: "GET", path: "/v1/content/ab/manifest", nowMilliseconds: 1_000_000)
        let claim = try #require(DeviceRequestAuth.parse(header))
        #expect(claim.deviceId == "dev-a" && claim.timestamp == 1_000_000)
        try DeviceRequestAuth.verify(claim, signingKey: keys.signingPublicKey, method: "GET", path: "/v1/content/ab/manifest",
                                     nowMilliseconds: 1_000_000 + 299_000)
        #expect(throws: TrustError.badToken("bad request signature")) {
            try DeviceRequestAuth.verify(claim, signingKey: keys.signingPublicKey, method: "GET", path: "/v1/content/cd/manifest", nowMilliseconds: 1_000_000)
        }
        #expect(throws: TrustError.badToken("bad request signature")) {
            try DeviceRequestAuth.verify(claim, signingKey: keys.signingPublicKey, method: "POST", path: "/v1/content/ab/manifest", nowMilliseconds: 1_000_000)
        }
        #expect(throws: TrustError.badToken("request time too far from the origin's clock")) {
            try DeviceRequestAuth.verify(claim, signingKey: keys.signingPublicKey, method: "GET", path: "/v1/content/ab/manifest", nowMilliseconds: 1_000_000 + 301_000)
        }
        let other = try DeviceKeys.loadOrCreate(directory: directory.appendingPathComponent("other"))
        #expect(throws: TrustError.badToken("bad request signature")) {
            try DeviceRequestAuth.verify(claim, signingKey: other.signingPublicKey, method: "GET", path: "/v1/content/ab/manifest", nowMilliseconds: 1_000_000)
        }
        // The Range and the body are signed too, and every header has its own nonce.
        let ranged = try #require(DeviceRequestAuth.parse(try keys.authorization(deviceId: device, method: "GET", path: "/d", range: "bytes=0-9",
                                                                                  nowMilliseconds: 1_000_000)))
        try DeviceRequestAuth.verify(ranged, signingKey: keys.signingPublicKey, method: "GET", path: "/d", range: "bytes=0-9", nowMilliseconds: 1_000_000)
        for range in [nil, "bytes=0-10"] {
            #expect(throws: TrustError.self) {
                try DeviceRequestAuth.verify(ranged, signingKey: keys.signingPublicKey, method: "GET", path: "/d", range: range, nowMilliseconds: 1_000_000)
            }
        }
        let posted = try #require(DeviceRequestAuth.parse(try keys.authorization(deviceId: device, method: "POST", path: "/r", body: Data("{}".utf8),
                                                                                  nowMilliseconds: 1_000_000)))
        try DeviceRequestAuth.verify(posted, signingKey: keys.signingPublicKey, method: "POST", path: "/r", body: Data("{}".utf8), nowMilliseconds: 1_000_000)
        #expect(throws: TrustError.self) {
            try DeviceRequestAuth.verify(posted, signingKey: keys.signingPublicKey, method: "POST", path: "/r", body: Data("{ }".utf8), nowMilliseconds: 1_000_000)
        }
        #expect(posted.nonce != ranged.nonce && posted.nonce != claim.nonce && claim.nonce.count == 32)
    }

    @Test func headersThatAreNotOursAreNotParsed() {
        for header in ["Bearer x", "Ferry-Device", "Ferry-Device id=a", "Ferry-Device id=a,ts=x,sig=AAAA", "Ferry-Device id=a,ts=1,sig=%%",
                       "Ferry-Device id=a,ts=1,sig=AAAA,junk", "Ferry-Device id=a,ts=1,sig=AAAA",
                       "Ferry-Device id=a,ts=1,nonce=abc,sig=AAAA", "Ferry-Device id=a,ts=1,nonce=\(String(repeating: "g", count: 32)),sig=AAAA", "Ferry-Device " + String(repeating: "a", count: 2000)] {
            #expect(DeviceRequestAuth.parse(header) == nil, "\(header.prefix(40))")
        }
    }

    @Test func enrolmentsRoundTrip() throws {
        let enrolment = DeviceEnrolment(deviceId: device, signingKey: "c2lnbg==", agreementKey: "YWdy", token: JoinToken.make().text, kind: .relay)
        #expect(try JSONCoding.decoder.decode(DeviceEnrolment.self, from: JSONCoding.encoder.encode(enrolment)) == enrolment)
        let enrolled = EnrolledDevice(deviceId: device, signingKey: "c2lnbg==", agreementKey: "YWdy", enrolledAt: "t", revokedAt: nil, tokenId: "0a1b2c3d4e5f")
        #expect(try JSONCoding.decoder.decode(EnrolledDevice.self, from: JSONCoding.encoder.encode(enrolled)) == enrolled)
        let asked = JoinTokenRequest(kind: .device, partyId: device, uses: 1, expiresInSeconds: 3600)
        #expect(try JSONCoding.decoder.decode(JoinTokenRequest.self, from: JSONCoding.encoder.encode(asked)) == asked)
        let issued = IssuedJoinToken(token: JoinToken.make().text, info: JoinTokenInfo(tokenId: "0a1b2c3d4e5f", kind: .relay, partyId: nil, usesLeft: nil,
                                                                                     expiresAt: nil, createdAt: "t", revokedAt: nil, enrolled: 3))
        #expect(try JSONCoding.decoder.decode(IssuedJoinToken.self, from: JSONCoding.encoder.encode(issued)) == issued)
    }

    @Test func secretsAdmitOnlyThemselves() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("operator.token")
        let made = try StoredSecret.loadOrCreate(given: nil, file: file, variable: "X")
        #expect(try StoredSecret.loadOrCreate(given: nil, file: file, variable: "X").token == made.token)
        #expect(made.token.utf8.count >= 40)
        #expect(made.admits(authorization: "Bearer \(made.token)"))
        #expect(!made.admits(authorization: "Bearer \(made.token)x") && !made.admits(authorization: made.token) && !made.admits(authorization: nil))
        // A browser's Basic authentication, the token as the password, whatever the user name.
        func basic(_ pair: String) -> String { "Basic " + Data(pair.utf8).base64EncodedString() }
        #expect(made.admits(authorization: basic("operator:\(made.token)")) && made.admits(authorization: basic(":\(made.token)")))
        #expect(!made.admits(authorization: basic("operator:\(made.token)x")) && !made.admits(authorization: basic(made.token))
                && !made.admits(authorization: "Basic %%%") && !made.admits(authorization: basic("\(made.token):x")))
        #expect(throws: TrustError.self) { try StoredSecret.loadOrCreate(given: "short", file: file, variable: "X") }
    }

    @Test func joinTokensParseOnlyTheirOwnShapeAndMatchOnlyTheirSecret() throws {
        let token = JoinToken.make()
        #expect(JoinToken(parsing: token.text) == token && JoinToken(parsing: " \(token.text)\n") == token)
        #expect(token.matches(storedHash: token.secretHash) && !JoinToken.make().matches(storedHash: token.secretHash))
        for text in ["", "FJT1", "FJT2.\(token.id).\(token.secret)", "FJT1.\(token.id)", "FJT1.xyz.\(token.secret)",
                     "FJT1.\(token.id).short", "FJT1.\(token.id).\(token.secret).extra", token.secret] {
            #expect(JoinToken(parsing: text) == nil, "\(text)")
        }
        #expect(JoinToken.make().id != token.id)
    }

    /// The reporter signs the body and the time; anything else is refused.
    @Test func deliverySignaturesCoverTheBodyAndTime() throws {
        let key = SigningKey.random(), other = SigningKey.random()
        let verifying = try VerifyingKey(base64: key.publicKey)
        let body = Data(#"{"requestId":"req-1"}"#.utf8), now: Int64 = 1_800_000_000_000
        let header = try DeliverySignature.sign(body, with: key, nowMilliseconds: now)
        try DeliverySignature.verify(header, body: body, key: verifying, nowMilliseconds: now + 1000)
        let refused: [(String?, Data, Int64)] = [
            (nil, body, now), ("ts=\(now)", body, now), ("garbage", body, now),
            (header, Data(#"{"requestId":"req-2"}"#.utf8), now),
            (try DeliverySignature.sign(body, with: other, nowMilliseconds: now), body, now),
            (header, body, now + DeliverySignature.skewMilliseconds + 1),
            (header.replacingOccurrences(of: "ts=\(now)", with: "ts=\(now + 1)"), body, now),
        ]
        for (header, body, at) in refused {
            #expect(throws: TrustError.self) { try DeliverySignature.verify(header, body: body, key: verifying, nowMilliseconds: at) }
        }
    }
}
