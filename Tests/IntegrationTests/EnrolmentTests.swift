import FerryProtocol
import FerryTrust
import Foundation
import Testing

@Suite struct EnrolmentAndEntitlement {
    /// Devices enrol themselves with the operator's credential; the origin serves only
    /// enrolled devices that sign their requests, only the content they are entitled to, and
    /// nothing to a device once the operator revokes it.
    @Test func onlyEnrolledEntitledDevicesAreServed() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let a = try stack.startAgent("a")
        let b = try stack.startAgent("b")

        let listed = try stack.ferry(["devices", "--origin", stack.originURL, "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let enrolled = try JSONCoding.decoder.decode([EnrolledDevice].self, from: Data(listed.stdout.utf8))
        #expect(Set(enrolled.map(\.deviceId.rawValue)) == [a.deviceId, b.deviceId])
        #expect(enrolled.allSatisfy { $0.revokedAt == nil })

        // A's keys, as `ferry keys` prints them, are the ones it enrolled.
        let keys = try stack.ferry(["keys", "--data-dir", a.dataDirectory.path])
        let aKey = try #require(enrolled.first { $0.deviceId.rawValue == a.deviceId }).signingKey
        #expect(keys.stdout.contains(aKey))
        let mode = try FileManager.default.attributesOfItem(atPath: a.dataDirectory.appendingPathComponent("device.keys").path)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let open = try stack.publish(try stack.randomFile("open.bin", mebibytes: 2))
        let onlyA = try stack.ferry(["publish", "--quiet", "--origin", stack.originURL, "--allow", a.deviceId,
                                     try stack.randomFile("only-a.bin", mebibytes: 2).path])
        #expect(onlyA.status == 0, "\(onlyA.stderr)")
        let restricted = try ContentID(onlyA.stdout.trimmingCharacters(in: .whitespacesAndNewlines))

        // Nobody's requests: no signature, a signature by a key the origin doesn't know for A, a
        // device that never enrolled, an enrolment with the wrong credential or someone else's id.
        let manifest = "/v1/content/\(open.hex)/manifest"
        #expect(try stack.http("GET", manifest, headers: [:]).status == 401)
        let stranger = try DeviceKeys.loadOrCreate(directory: stack.directory.appendingPathComponent("stranger"))
        let posingAsA = try stranger.authorization(deviceId: try DeviceID(a.deviceId), method: "GET", path: manifest,
                                                   nowMilliseconds: SessionTokens.nowMilliseconds())
        #expect(try stack.http("GET", manifest, headers: ["Authorization": posingAsA]).status == 401)
        let unknown = try stranger.authorization(deviceId: try DeviceID("dev-stranger"), method: "GET", path: manifest,
                                                 nowMilliseconds: SessionTokens.nowMilliseconds())
        #expect(try stack.http("GET", manifest, headers: ["Authorization": unknown]).status == 403)
        func enrol(_ id: String, credential: String) throws -> Int {
            let body = try JSONCoding.encoder.encode(DeviceEnrolment(deviceId: try DeviceID(id), signingKey: stranger.signingPublicKey,
                                                                     agreementKey: stranger.agreementPublicKey, credential: credential))
            return try stack.http("POST", "/v1/devices", body: body, headers: [:]).status
        }
        #expect(try enrol("dev-stranger", credential: "not-the-credential-at-all") == 403)
        let credential = try String(contentsOfFile: stack.path("origin/enrolment.credential"), encoding: .utf8)
        #expect(try enrol(a.deviceId, credential: credential) == 409)

        // Entitlement: B may get the open content, not A's.
        #expect(try stack.get(open, via: b).ok)
        let refused = try stack.get(restricted, via: b)
        #expect(!refused.ok && (refused.error ?? "").contains("not-entitled"), "\(refused.error ?? "")")
        #expect(try stack.get(restricted, via: a).ok)

        // Revoked: B gets nothing more, and the list says so. Ferry hears of it too: B, which
        // holds the open content, is dropped by matcher and broker and never sends it again.
        try waitForHoldings(stack, b, hold: open)
        let revoke = try stack.ferry(["devices", "revoke", b.deviceId, "--origin", stack.originURL])
        #expect(revoke.status == 0, "\(revoke.stderr)")
        let revoked = try stack.events.waitFor(topic: "device.revoked")
        #expect(revoked.data["ferryTold"] == .bool(true))
        for service in ["matcher", "broker"] {
            try stack.events.waitFor("the \(service) to drop B") {
                $0.topic == "device.lost" && $0.publisher == service && $0.data["deviceId"]?.stringValue == b.deviceId && $0.data["reason"]?.stringValue == "revoked"
            }
        }
        let fromA = try stack.get(open, via: a)
        #expect(fromA.ok && fromA.sources.map(\.kind) == [.origin], "A was served by \(fromA.sources)")
        try waitUntil("the broker to keep B out", timeout: 10) { stack.counter(try stack.status(stack.brokerControl), "agents") == 1 }
        let another = try stack.publish(try stack.randomFile("another.bin", mebibytes: 1))
        let afterRevoke = try stack.get(another, via: b)
        #expect(!afterRevoke.ok && (afterRevoke.error ?? "").contains("device-revoked"), "\(afterRevoke.error ?? "")")
        let relisted = try JSONCoding.decoder.decode([EnrolledDevice].self, from: Data(try stack.ferry(["devices", "--origin", stack.originURL, "--json"]).stdout.utf8))
        #expect(relisted.first { $0.deviceId.rawValue == b.deviceId }?.revokedAt != nil)
        #expect(try stack.ferry(["devices", "--origin", stack.originURL, "--operator-token", "not-the-operator-token"]).status == 1)
    }
}
