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
        // Each shows the token it enrolled with: the standing device token.
        let standingId = JoinToken(parsing: try String(contentsOfFile: stack.path("origin/join-tokens/device.token"), encoding: .utf8))?.id
        #expect(standingId != nil && enrolled.allSatisfy { $0.tokenId == standingId && $0.kind == .device })

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
        // The standing device token, as `Scripts/up` and compose hand it to devices.
        let standing = try String(contentsOfFile: stack.path("origin/join-tokens/device.token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        func enrol(_ id: String, token: String, keys: DeviceKeys = stranger, kind: PartyKind? = nil) throws -> (status: Int, reason: String) {
            let body = try JSONCoding.encoder.encode(DeviceEnrolment(deviceId: try DeviceID(id), signingKey: keys.signingPublicKey,
                                                                     agreementKey: keys.agreementPublicKey, token: token, kind: kind))
            let answer = try stack.http("POST", "/v1/devices", body: body, headers: [:])
            return (answer.status, (try? JSONCoding.decoder.decode(ErrorBody.self, from: answer.body))?.reason ?? "")
        }
        #expect(try enrol("dev-stranger", token: "not-a-token-at-all-but-long-enough") == (401, "bad-token"))
        #expect(try enrol("dev-stranger", token: JoinToken.make().text) == (401, "bad-token"))
        #expect(try enrol(a.deviceId, token: standing).status == 409)
        // Hole 1 of the trust review: whoever held the one shared credential could pick its kind
        // and its id. A device's token enrols devices only...
        #expect(try enrol("relay-posing", token: standing, kind: .relay) == (403, "token-kind"))
        // ...a token naming an id enrols that id only, and nobody else takes the id...
        func token(_ arguments: [String]) throws -> String {
            let made = try stack.ferry(["tokens", "create", "--origin", stack.originURL] + arguments)
            #expect(made.status == 0, "\(made.stderr)")
            return made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let named = try token(["--kind", "device", "--id", "dev-named", "--uses", "1"])
        #expect(try enrol("dev-other", token: named) == (403, "token-id"))
        #expect(try enrol("dev-named", token: standing) == (403, "id-reserved"))
        // ...nor an id an allow list names before its device enrols.
        let forFuture = try stack.ferry(["publish", "--quiet", "--origin", stack.originURL, "--allow", "dev-future",
                                         try stack.randomFile("future.bin", mebibytes: 1).path])
        #expect(forFuture.status == 0, "\(forFuture.stderr)")
        #expect(try enrol("dev-future", token: standing) == (403, "id-reserved"))
        #expect(try enrol("dev-named", token: named) == (201, ""))
        // Uses, expiry and revocation of the token itself.
        let once = try token(["--kind", "device", "--uses", "1"])
        #expect(try enrol("dev-once", token: once, keys: try DeviceKeys.loadOrCreate(directory: stack.directory.appendingPathComponent("once"))) == (201, ""))
        #expect(try enrol("dev-twice", token: once, keys: try DeviceKeys.loadOrCreate(directory: stack.directory.appendingPathComponent("twice"))) == (403, "token-used-up"))
        let brief = try token(["--kind", "device", "--expires", "1s"])
        Thread.sleep(forTimeInterval: 1.2)
        let late = try DeviceKeys.loadOrCreate(directory: stack.directory.appendingPathComponent("late"))
        #expect(try enrol("dev-late", token: brief, keys: late) == (403, "token-expired"))
        let revocable = try token(["--kind", "device"])
        let revokedToken = try stack.ferry(["tokens", "revoke", try #require(JoinToken(parsing: revocable)).id, "--origin", stack.originURL])
        #expect(revokedToken.status == 0, "\(revokedToken.stderr)")
        #expect(try enrol("dev-late", token: revocable, keys: late) == (403, "token-revoked"))
        let tokens = try JSONCoding.decoder.decode([JoinTokenInfo].self, from: Data(try stack.ferry(["tokens", "list", "--json", "--origin", stack.originURL]).stdout.utf8))
        #expect(tokens.first { $0.tokenId == JoinToken(parsing: once)?.id }?.usesLeft == 0)
        #expect(tokens.first { $0.tokenId == JoinToken(parsing: revocable)?.id }?.revokedAt != nil)
        // Nobody but the operator makes or lists tokens.
        #expect(try stack.http("GET", "/v1/tokens", headers: [:]).status == 401)

        // Publishing names its audience.
        let noAudience = try stack.ferry(["publish", "--quiet", "--origin", stack.originURL, try stack.randomFile("nobody.bin", mebibytes: 1).path])
        #expect(noAudience.status != 0 && noAudience.stderr.contains("audience"), "\(noAudience.stderr)")
        let raw = try stack.http("POST", "/v1/content?name=raw.bin", body: Data(repeating: 7, count: 1024))
        #expect(raw.status == 400 && String(decoding: raw.body, as: UTF8.self).contains("no-audience"))

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
        // A revoked device never enrols again: not under its id, nor its keys under a new id.
        let bKeys = try DeviceKeys.loadOrCreate(directory: b.dataDirectory)
        #expect(try enrol("dev-reborn", token: standing, keys: bKeys) == (403, "key-revoked"))
        #expect(try enrol(b.deviceId, token: standing, keys: try DeviceKeys.loadOrCreate(directory: stack.directory.appendingPathComponent("fresh"))) == (403, "device-revoked"))
        // An enrolled device that restarts proves itself with its key: with every device token
        // revoked, A comes back enrolled and is served.
        for token in tokens where token.kind == .device { _ = try stack.ferry(["tokens", "revoke", token.tokenId, "--origin", stack.originURL]) }
        _ = try stack.ferry(["tokens", "revoke", try #require(standingId), "--origin", stack.originURL])
        // A revoked standing token stays revoked when the origin restarts: no new one replaces it.
        stack.signal("origin", SIGTERM)
        stack.processes["origin"]?.waitUntilExit()
        try stack.restart("origin")
        try waitUntil("the origin to answer again", timeout: 30) { (try? stack.http("GET", "/health").status) == 200 }
        let standingAfter = try String(contentsOfFile: stack.path("origin/join-tokens/device.token"), encoding: .utf8)
        #expect(JoinToken(parsing: standingAfter)?.id == standingId)
        let afterRestart = try enrol("dev-after-restart", token: standing,
                                     keys: try DeviceKeys.loadOrCreate(directory: stack.directory.appendingPathComponent("after-restart")))
        #expect(afterRestart == (403, "token-revoked"), "\(afterRestart)")
        stack.signal("agent-a", SIGTERM)
        stack.processes["agent-a"]?.waitUntilExit()
        let restarted = try stack.restartAgent(a)
        try waitUntil("A to find itself enrolled by its key", timeout: 20) {
            (try? String(contentsOfFile: stack.path("logs/agent-a.log"), encoding: .utf8))?.contains("by=key") ?? false
        }
        #expect(try stack.get(another, via: restarted).ok)
        let relisted = try JSONCoding.decoder.decode([EnrolledDevice].self, from: Data(try stack.ferry(["devices", "--origin", stack.originURL, "--json"]).stdout.utf8))
        #expect(relisted.first { $0.deviceId.rawValue == b.deviceId }?.revokedAt != nil)
        #expect(try stack.ferry(["devices", "--origin", stack.originURL, "--operator-token", "not-the-operator-token"]).status == 1)

        // Hole 8: every change above is in the audit trail, with who made it, from where and
        // when, across the origin's restart, and each was an event saying who.
        let futureId = try ContentID(forFuture.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(try stack.ferry(["withdraw", futureId.hex, "--origin", stack.originURL]).status == 0)
        let audit = try stack.ferry(["audit", "--json", "--origin", stack.originURL])
        #expect(audit.status == 0, "\(audit.stderr)")
        let trail = try JSONCoding.decoder.decode([AuditEntry].self, from: Data(audit.stdout.utf8))
        #expect(trail.map(\.seq) == Array(1...Int64(trail.count)), "entries out of order or missing: \(trail.map(\.seq))")
        func entries(_ action: AuditAction) -> [AuditEntry] { trail.filter { $0.action == action } }
        let relayStandingId = JoinToken(parsing: try String(contentsOfFile: stack.path("origin/join-tokens/relay.token"), encoding: .utf8))?.id
        #expect(Set(entries(.tokenCreated).filter { $0.actor == "origin" }.map(\.subject)) == Set([standingId, relayStandingId].compactMap { $0 }))
        #expect(entries(.tokenCreated).filter { $0.actor == "origin" }.allSatisfy { $0.address == nil })
        let madeByOperator = entries(.tokenCreated).filter { $0.actor == "operator" }
        #expect(Set(madeByOperator.map(\.subject)) == Set([named, once, brief, revocable].compactMap { JoinToken(parsing: $0)?.id }))
        #expect(madeByOperator.allSatisfy { $0.address == "127.0.0.1" })
        #expect(madeByOperator.first { $0.subject == JoinToken(parsing: named)?.id }?.detail["partyId"] == .string("dev-named"))
        let enrolments = Dictionary(entries(.deviceEnrolled).map { ($0.subject, $0) }) { first, _ in first }
        #expect(Set(enrolments.keys) == [a.deviceId, b.deviceId, "dev-named", "dev-once"], "\(enrolments.keys.sorted())")
        #expect(enrolments[a.deviceId]?.actor == "token:\(standingId ?? "")" && enrolments[a.deviceId]?.address == "127.0.0.1")
        #expect(enrolments["dev-named"]?.actor == "token:\(JoinToken(parsing: named)?.id ?? "")")
        // Revoking what was revoked already changes nothing, and is no second entry.
        #expect(entries(.tokenRevoked).map(\.subject).sorted() == Set(tokens.filter { $0.kind == .device }.map(\.tokenId)).sorted())
        #expect(entries(.deviceRevoked).map(\.subject) == [b.deviceId] && entries(.deviceRevoked).first?.actor == "operator")
        let published = entries(.contentPublished)
        #expect(Set(published.map(\.subject)) == [open.hex, restricted.hex, futureId.hex, another.hex])
        #expect(published.first { $0.subject == restricted.hex }?.detail["audience"] == .string("allow-list"))
        #expect(published.first { $0.subject == open.hex }?.detail["audience"] == .string("all"))
        #expect(entries(.contentWithdrawn).map(\.subject) == [futureId.hex] && entries(.contentWithdrawn).first?.actor == "operator")
        let revocationEvent = try stack.events.waitFor(topic: "device.revoked")
        #expect(revocationEvent.data["actor"] == .string("operator")
                && revocationEvent.data["auditSeq"] == JSONValue(Int(entries(.deviceRevoked).first?.seq ?? 0)))
        // A page at a time, after an entry; and the operator's alone.
        let later = try JSONCoding.decoder.decode([AuditEntry].self, from: Data(try stack.ferry(["audit", "--json", "--after", "3", "--origin", stack.originURL]).stdout.utf8))
        #expect(later.first?.seq == 4 && later.count == trail.count - 3)
        #expect(try stack.http("GET", "/v1/audit?limit=2").body.count < audit.stdout.utf8.count)
        #expect(try stack.http("GET", "/v1/audit", headers: [:]).status == 401)
        let lines = try stack.ferry(["audit", "--origin", stack.originURL]).stdout
        #expect(lines.contains("device.revoked  \(b.deviceId)  by operator  from 127.0.0.1"), "\(lines)")
    }
}
