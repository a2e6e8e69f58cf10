@testable import FerryService
import FerryProtocol
import Foundation
import Testing
import ZeroMQ

/// The ZAP handler's decisions, the fleet's key files, allow lists and the origin's signed
/// answer, without sockets (TransportSecurityTests runs them on real processes).
@Suite struct TransportDecisions {
    func fleet() throws -> (FleetKeys, URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-\(UUID().uuidString.prefix(8))")
        try FleetKeys.make(at: directory.path)
        return (try FleetKeys(directory: directory.path), directory)
    }

    func request(domain: String, key: [UInt8], mechanism: String = "CURVE") -> [[UInt8]] {
        [Array("1.0".utf8), Array("7".utf8), Array(domain.utf8), Array("10.0.0.9".utf8), [], Array(mechanism.utf8), key]
    }

    @Test func fleetKeysAreAdmittedEverywhereAndStrangersNowhere() throws {
        let (fleet, directory) = try fleet()
        defer { try? FileManager.default.removeItem(at: directory) }
        let stranger = try CurveKeyPair.generate()
        let listed = AllowList(names: [stranger.publicKey: "billing"])
        var refusals: [TransportRefusal] = []
        for domain in ["fleet", "parties", "listed"] {
            let reply = KeyGate.answer(request(domain: domain, key: fleet.publicKeys[.matcher]!), fleet: fleet, allowList: listed,
                                       enrolled: nil) { refusals.append($0) }
            #expect(String(decoding: reply[2], as: UTF8.self) == "200")
            #expect(String(decoding: reply[4], as: UTF8.self) == "fleet:matcher")
        }
        // Listed only where lists count; unenrolled (no registry to ask) on `parties`.
        let onListed = KeyGate.answer(request(domain: "listed", key: stranger.publicKey), fleet: fleet, allowList: listed, enrolled: nil) { refusals.append($0) }
        #expect(String(decoding: onListed[4], as: UTF8.self) == "listed:billing")
        for domain in ["fleet", "parties", "nonsense"] {
            let reply = KeyGate.answer(request(domain: domain, key: stranger.publicKey), fleet: fleet, allowList: listed, enrolled: nil) { refusals.append($0) }
            #expect(String(decoding: reply[2], as: UTF8.self) == "400")
            #expect(reply[1] == Array("7".utf8), "the reply names the request it answers")
        }
        #expect(refusals.map(\.domain) == ["fleet", "parties", "nonsense"])
        #expect(refusals.allSatisfy { $0.key == Data(stranger.publicKey).base64EncodedString() && $0.address == "10.0.0.9" })
        #expect(refusals.last?.reason == "unknown domain nonsense")

        let plain = KeyGate.answer(request(domain: "fleet", key: [], mechanism: "NULL"), fleet: fleet, allowList: listed, enrolled: nil) { refusals.append($0) }
        #expect(String(decoding: plain[2], as: UTF8.self) == "400")
        let malformed = KeyGate.answer([Array("9.9".utf8)], fleet: fleet, allowList: listed, enrolled: nil) { refusals.append($0) }
        #expect(String(decoding: malformed[2], as: UTF8.self) == "500")
    }

    @Test func metadataIsZMTPPropertyEncoding() {
        let frame = KeyGate.metadataFrame(["Ferry-Key": "abc"])
        #expect(frame == [9] + Array("Ferry-Key".utf8) + [0, 0, 0, 3] + Array("abc".utf8))
    }

    @Test func fleetKeysAreMadeOnceAndAMissingPublicHalfIsWrittenAgain() throws {
        let (fleet, directory) = try fleet()
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try FleetKeys.make(at: directory.path).isEmpty)
        let broker = directory.appendingPathComponent("public/broker.key")
        try FileManager.default.removeItem(at: broker)
        try FleetKeys.make(at: directory.path)
        let again = try FleetKeys(directory: directory.path)
        #expect(again.publicKeys == fleet.publicKeys && again.originSigningKey == fleet.originSigningKey)
        #expect(try again.keyPair(for: .broker).publicKey == fleet.publicKeys[.broker])
        let mode = try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent("secret/broker.key").path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    /// What compose gives each host: public/ and its own share as secret/, from which its
    /// service starts, and in which no other role's secret is.
    @Test func eachHandedOutShareHoldsOneRolesSecretsOnly() throws {
        let (fleet, directory) = try fleet()
        let out = directory.appendingPathComponent("out")
        defer { try? FileManager.default.removeItem(at: directory) }
        try fleet.handOut(to: out.path)
        let everyone = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("public").path).sorted()
        #expect(everyone == (FleetRole.allCases.map { "\($0.rawValue).key" } + [FleetKeys.signingKeyName, FleetKeys.reporterSigningKeyName]).sorted())
        for role in FleetRole.allCases {
            let host = directory.appendingPathComponent("host-\(role.rawValue)")
            try FileManager.default.createDirectory(at: host, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: out.appendingPathComponent("public"), to: host.appendingPathComponent("public"))
            try FileManager.default.copyItem(at: out.appendingPathComponent(role.rawValue), to: host.appendingPathComponent("secret"))
            let share = try FileManager.default.contentsOfDirectory(atPath: host.appendingPathComponent("secret").path).sorted()
            #expect(share == role.secretFiles.sorted())
            let keys = try FleetKeys(directory: host.path)
            #expect(try keys.keyPair(for: role).publicKey == fleet.publicKeys[role])
            for other in FleetRole.allCases where other != role {
                #expect(throws: ConfigurationError.self) { try keys.keyPair(for: other) }
            }
            let mode = try FileManager.default.attributesOfItem(atPath: host.appendingPathComponent("secret/\(role.secretFiles[0])").path)[.posixPermissions] as? Int
            #expect(mode == 0o600)
        }
        let origin = try FleetKeys(directory: directory.appendingPathComponent("host-origin").path)
        #expect(try origin.secretSigningKey(.origin).publicKey == fleet.originSigningKey)
        let broker = try FleetKeys(directory: directory.appendingPathComponent("host-broker").path)
        #expect(throws: ConfigurationError.self) { try broker.secretSigningKey(.origin) }
        #expect(throws: ConfigurationError.self) { try broker.secretSigningKey(.reporter) }
    }

    @Test func allowListsTakeKeysWithHashesAndRefuseWhatIsNotAKey() throws {
        var key = try CurveKeyPair.generate().publicKey
        while !Z85.encode(key).contains("#") { key = try CurveKeyPair.generate().publicKey }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("allow-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: file) }
        try "# outside servers\n\n  \(Z85.encode(key))   billing server\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(try AllowList(file: file.path).names == [key: "billing server"])
        try "not-a-key billing\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(throws: ConfigurationError.self) { try AllowList(file: file.path) }
    }

    @Test func theOriginsAnswerAndTheRelayKeyInAGrantRoundTrip() throws {
        let answer = TransportKeyAnswer(key: Data(repeating: 7, count: 32).base64EncodedString(), kind: .relay, id: "relay-1", issuedAt: 1_700_000_000_000)
        let bytes = try JSONCoding.encoder.encode(answer)
        #expect(try JSONCoding.decoder.decode(TransportKeyAnswer.self, from: bytes) == answer)
        let signed = SignedTransportKeyAnswer(answer: bytes.base64EncodedString(), signature: "c2ln")
        #expect(try JSONCoding.decoder.decode(SignedTransportKeyAnswer.self, from: try JSONCoding.encoder.encode(signed)) == signed)
        let grant = SessionGrant(sessionId: SessionID(9), relayId: try RelayID("relay-1"), address: "100.96.0.1", role: .receiver,
                                 expiresAt: 5, relayKey: answer.key)
        #expect(try JSONCoding.decoder.decode(SessionGrant.self, from: try JSONCoding.encoder.encode(grant)) == grant)
        let hop = LinkHop(address: "100.96.0.4", endpoint: "tcp://10.0.0.2:7200", key: answer.key)
        #expect(try JSONCoding.decoder.decode(LinkHop.self, from: try JSONCoding.encoder.encode(hop)) == hop)
    }
}
