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
    }

    @Test func headersThatAreNotOursAreNotParsed() {
        for header in ["Bearer x", "Ferry-Device", "Ferry-Device id=a", "Ferry-Device id=a,ts=x,sig=AAAA", "Ferry-Device id=a,ts=1,sig=%%",
                       "Ferry-Device id=a,ts=1,sig=AAAA,junk", "Ferry-Device " + String(repeating: "a", count: 2000)] {
            #expect(DeviceRequestAuth.parse(header) == nil, "\(header.prefix(40))")
        }
    }

    @Test func enrolmentsRoundTrip() throws {
        let enrolment = DeviceEnrolment(deviceId: device, signingKey: "c2lnbg==", agreementKey: "YWdy", credential: "secret")
        #expect(try JSONCoding.decoder.decode(DeviceEnrolment.self, from: JSONCoding.encoder.encode(enrolment)) == enrolment)
        let enrolled = EnrolledDevice(deviceId: device, signingKey: "c2lnbg==", agreementKey: "YWdy", enrolledAt: "t", revokedAt: nil)
        #expect(try JSONCoding.decoder.decode(EnrolledDevice.self, from: JSONCoding.encoder.encode(enrolled)) == enrolled)
    }

    @Test func secretsAdmitOnlyThemselves() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("operator.token")
        let made = try StoredSecret.loadOrCreate(given: nil, file: file, variable: "X")
        #expect(try StoredSecret.loadOrCreate(given: nil, file: file, variable: "X").token == made.token)
        #expect(made.token.utf8.count >= 40)
        #expect(made.admits(authorization: "Bearer \(made.token)"))
        #expect(!made.admits(authorization: "Bearer \(made.token)x") && !made.admits(authorization: made.token) && !made.admits(authorization: nil))
        #expect(throws: TrustError.self) { try StoredSecret.loadOrCreate(given: "short", file: file, variable: "X") }
    }
}
