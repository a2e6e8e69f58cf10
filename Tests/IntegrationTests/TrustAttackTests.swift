import FerryLink
import FerryProtocol
import FerryTrust
import Foundation
import Testing
import ZeroMQ

/// The trust review's holes, each performed as an attacker would on one secured stack of real
/// processes: what was let through before the fix is refused now, and the honest party's
/// delivery is made and recorded whatever the attacker sent first.
@Suite(.serialized) struct TrustAttacks {
    @Test func eachAttackOfTheReviewIsRefused() throws {
        let stack = try Stack(relays: 1, secure: true)
        defer { stack.stop() }
        try Self.onlyTheReporterRecordsFulfilmentsAndOnlyTheOperatorReadsThem(stack)
        try Self.anotherDevicesCompletionCanNeitherReplaceNorEraseAWaitingOne(stack)
        try Self.aSessionInAnotherLayoutIsRefusedAtBothEnds(stack)
        try Self.anAgentWritesOnlyUnderItsOutputDirectory(stack)
        try Self.aDevicePublishesOnlyItsOwnTopics(stack)
        try Self.aSignedRequestCoversItsRangeAndBodyAndIsTakenOnce(stack)
        try Self.aSquatterOnTheNextOverlayAddressesKeepsNobodyOut(stack)
    }

    /// Hole 3: anyone could POST a fulfilment. An attacker who read a request id off the plain
    /// event stream posted a fake one first, and the reporter's real one was then acknowledged
    /// as a duplicate and lost. Fleet records were readable by anyone.
    static func onlyTheReporterRecordsFulfilmentsAndOnlyTheOperatorReadsThem(_ stack: Stack) throws {
        let a = try stack.startAgent("a")
        let content = try stack.publish(try stack.randomFile("content.bin", mebibytes: 2))

        let getter = try startGet(stack, content, via: a, output: stack.directory.appendingPathComponent("a.bin"))
        let received = try stack.events.waitFor("A's request to reach intake") {
            $0.topic == "request.received" && $0.data["deviceId"]?.stringValue == a.deviceId
        }
        let requestId = try #require(received.requestId)
        // Posted the moment the request id is public, long before the real delivery.
        let forged = try JSONCoding.encoder.encode(Fulfilment(
            requestId: try RequestID(requestId), deviceId: try DeviceID("dev-forger"), contentId: content, size: 2 << 20,
            bytesFromPeers: 2 << 20, bytesFromOrigin: 0, sources: [], verification: .matched, recordedAt: Timestamp.now()))
        #expect(try stack.http("POST", "/v1/fulfilments", body: forged, headers: [:]).status == 401)
        // Signed, but not by the reporter: a key of the attacker's own.
        let impostor = try DeliverySignature.sign(forged, with: SigningKey.random(), nowMilliseconds: SessionTokens.nowMilliseconds())
        let signedByImpostor = try stack.http("POST", "/v1/fulfilments", body: forged, headers: [DeliverySignature.header: impostor])
        #expect(signedByImpostor.status == 401)
        #expect(String(decoding: signedByImpostor.body, as: UTF8.self).contains("delivery-signature"))

        getter.waitUntilExit()
        #expect(getter.terminationStatus == 0)
        let acknowledged = try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: requestId)
        #expect(acknowledged.data["duplicate"] == .bool(false), "the reporter's delivery was taken for a duplicate")
        let recorded = try JSONCoding.decoder.decode(Fulfilment.self, from: try stack.http("GET", "/v1/fulfilments/\(requestId)").body)
        #expect(recorded.deviceId.rawValue == a.deviceId && recorded.bytesFromOrigin == 2 << 20)
        let drops = stack.events.matching("message.dropped").filter { $0.publisher == "origin" && $0.data["kind"]?.stringValue == "fulfilment" }
        #expect(drops.count >= 2)
        let metrics = String(decoding: try stack.http("GET", "/metrics").body, as: UTF8.self)
        #expect((Stack.sample(metrics, #"ferry_origin_refused_total{reason="delivery-signature"}"#) ?? 0) >= 2)

        // What reveals the fleet needs the operator token, as a Bearer token or a browser's Basic password.
        for path in ["/v1/fulfilments", "/v1/fulfilments/\(requestId)", "/v1/stats", "/v1/live", "/status", "/v1/tokens", "/v1/devices"] {
            let anonymous = try stack.http("GET", path, headers: [:])
            #expect(anonymous.status == 401, "\(path) answered \(anonymous.status) without a token")
            #expect(anonymous.headers["www-authenticate"]?.hasPrefix("Basic") == true, "\(path): \(anonymous.headers)")
            #expect(try stack.http("GET", path, headers: ["Authorization": "Bearer not-the-operator-token-at-all"]).status == 401)
        }
        let basic = "Basic " + Data("operator:\(stack.operatorToken)".utf8).base64EncodedString()
        let stats = try stack.http("GET", "/v1/stats", headers: ["Authorization": basic])
        #expect(stats.status == 200)
        #expect(try JSONCoding.decoder.decode(OriginStats.self, from: stats.body).fulfilments == 1)
        #expect(try stack.http("GET", "/health", headers: [:]).status == 200)
        // Restricted content is listed to the operator only.
        let restricted = try stack.ferry(["publish", "--quiet", "--origin", stack.originURL, "--allow", a.deviceId,
                                          try stack.randomFile("restricted.bin", mebibytes: 1).path])
        let restrictedId = restricted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(restricted.status == 0 && !restrictedId.isEmpty)
        let anonymousList = String(decoding: try stack.http("GET", "/v1/content", headers: [:]).body, as: UTF8.self)
        #expect(anonymousList.contains(content.hex) && !anonymousList.contains(restrictedId))
        #expect(String(decoding: try stack.http("GET", "/v1/content").body, as: UTF8.self).contains(restrictedId))
        // Lists are paged: at most 1,000 an answer.
        #expect(try stack.http("GET", "/v1/fulfilments?limit=1001").status == 400)
        let firstPage = try JSONCoding.decoder.decode([Fulfilment].self, from: try stack.http("GET", "/v1/fulfilments?limit=1").body)
        #expect(firstPage.map(\.requestId.rawValue) == [requestId])
        #expect(try stack.http("GET", "/v1/fulfilments?after=\(requestId)").body == Data("[]".utf8))
        // The CLI reads them as the operator.
        let listed = try stack.ferry(["fulfilments", "--origin", stack.originURL])
        #expect(listed.status == 0 && listed.stdout.contains(requestId), "\(listed.stderr)")
        let refused = try stack.run("ferry", ["fulfilments", "--origin", stack.originURL, "--operator-token", "not-the-operator-token-at-all"])
        #expect(refused.status == 1 && refused.stderr.contains("operator-credential"))
        // The audit trail names the token each party enrolled with: the relay, the relay token.
        let trail = try JSONCoding.decoder.decode([AuditEntry].self, from: try stack.http("GET", "/v1/audit").body)
        let relayToken = JoinToken(parsing: try String(contentsOfFile: stack.path("origin/join-tokens/relay.token"), encoding: .utf8))?.id
        #expect(trail.contains { $0.action == .deviceEnrolled && $0.detail["kind"] == .string("relay") && $0.actor == "token:\(relayToken ?? "-")" },
                "\(trail)")
    }

    /// Hole 4: waiting completions were kept by request id alone. A second device's completion
    /// for the same request id replaced the first (or, refused, erased it), so the real
    /// device's delivery was never recorded.
    static func anotherDevicesCompletionCanNeitherReplaceNorEraseAWaitingOne(_ stack: Stack) throws {
        let standing = try String(contentsOfFile: stack.path("origin/join-tokens/device.token"), encoding: .utf8)
        func enrolled(_ id: String) throws -> DeviceKeys {
            let keys = try DeviceKeys.loadOrCreate(directory: stack.directory.appendingPathComponent(id))
            let body = try JSONCoding.encoder.encode(DeviceEnrolment(deviceId: try DeviceID(id), signingKey: keys.signingPublicKey,
                                                                     agreementKey: keys.agreementPublicKey, token: standing))
            #expect(try stack.http("POST", "/v1/devices", body: body, headers: [:]).status == 201)
            return keys
        }
        let victim = try enrolled("dev-victim"), attacker = try enrolled("dev-attacker")
        func pusher(_ keys: CurveKeyPair) throws -> Socket {
            let socket = try stack.context.socket(.push)
            try socket.makeCurveClient(keys, serverKey: try stack.fleetKey(.public, "reporter"))
            try socket.connect(stack.reporter)
            return socket
        }
        let content = try ContentID(String(repeating: "c", count: 64))
        let request = try RequestID("req-contested")
        func completion(_ device: String) throws -> [Data] {
            try Completion(requestId: request, deviceId: try DeviceID(device), contentId: content, size: 4096,
                           sources: [SourceBytes(kind: .origin, bytes: 4096)], startedAt: Timestamp.now(), finishedAt: Timestamp.now()).frames()
        }
        let reporterStatus = stack.status["reporter"]!
        func waiting() throws -> Double { stack.counter(try stack.status(reporterStatus), "awaitingRecords") }

        let fromVictim = try pusher(try CurveKeyPair(secretKey: Array(victim.agreementSecretKey))),
            fromAttacker = try pusher(try CurveKeyPair(secretKey: Array(attacker.agreementSecretKey)))
        defer { fromVictim.close(); fromAttacker.close() }
        try fromVictim.send(try completion("dev-victim"))
        try waitUntil("the victim's completion to wait for the broker's record", timeout: 15) { try waiting() == 1 }
        try fromAttacker.send(try completion("dev-attacker"))
        try waitUntil("the attacker's completion to wait beside it, not over it", timeout: 15) { try waiting() == 2 }

        // The broker's record names the victim: its completion is recorded, the attacker's refused.
        let broker = try stack.context.socket(.push)
        defer { broker.close() }
        try broker.makeCurveClient(try stack.fleetKeyPair("broker"), serverKey: try stack.fleetKey(.public, "reporter"))
        try broker.connect(stack.reporter)
        try broker.send(try RequestRecord(requestId: request, deviceId: try DeviceID("dev-victim"), contentId: content, server: stack.originURL).frames())
        let recorded = try stack.events.waitFor(topic: "fulfilment.recorded", requestId: request.rawValue)
        #expect(recorded.data["deviceId"]?.stringValue == "dev-victim")
        let rejected = try stack.events.waitFor(topic: "fulfilment.rejected", requestId: request.rawValue)
        #expect(rejected.data["deviceId"]?.stringValue == "dev-attacker")
        try waitUntil("nothing left waiting", timeout: 15) { try waiting() == 0 }
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: request.rawValue)
        let atOrigin = try JSONCoding.decoder.decode(Fulfilment.self, from: try stack.http("GET", "/v1/fulfilments/\(request.rawValue)").body)
        #expect(atOrigin.deviceId.rawValue == "dev-victim")
    }

    /// Hole 2: the nonce is the chunk and packet number, and the links took the layout from the
    /// request, never checked against the signed manifest. A request for published content with
    /// 512-byte packets made an honest holder seal other bytes under nonces normal sessions
    /// use, and a relay that saw both could XOR the plaintext out. Both ends now refuse it.
    static func aSessionInAnotherLayoutIsRefusedAtBothEnds(_ stack: Stack) throws {
        let holder = try stack.startAgent("h"), device = try stack.startAgent("d")
        let file = try stack.randomFile("layout.bin", mebibytes: 4)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: holder).ok)
        try waitForHoldings(stack, holder, hold: content)

        let request = try RequestID("req-other-layout")
        let attack = DownloadRequest(requestId: request, deviceId: try DeviceID(device.deviceId),
                                     content: ContentSummary(contentId: content, size: 4 << 20, chunkSize: 262_144, packetSize: 512),
                                     server: stack.originURL)
        let push = try stack.context.socket(.push)
        defer { push.close() }
        try stack.secureAsOperator(push, server: "intake")
        try push.connect(stack.intake)
        try push.send(try attack.frames())

        try stack.events.waitFor(topic: "session.brokered", requestId: request.rawValue)
        for (role, party) in [("sender", holder), ("receiver", device)] {
            let refused = try stack.events.waitFor("the \(role) to refuse the layout") {
                $0.topic == "link.refused" && $0.requestId == request.rawValue && $0.data["role"]?.stringValue == role
            }
            #expect(refused.data["deviceId"]?.stringValue == party.deviceId)
            #expect(refused.data["reason"]?.stringValue == "layout-mismatch")
            #expect(refused.data["sessionLayout"]?["packetSize"]?.numberValue == 512)
            #expect(refused.data["manifestLayout"]?["packetSize"]?.numberValue == 65_536)
            #expect(stack.counter(try stack.status(party.control), "sessions.refused.layout-mismatch") == 1)
        }
        // Not one packet was sealed in the claimed layout: neither device opened a link (the
        // relay had made its half of the path before they refused).
        let spawned = stack.events.matching("link.spawned").filter { $0.requestId == request.rawValue && $0.data["role"]?.stringValue != "relay" }
        #expect(spawned.isEmpty, "\(spawned)")
        // The device still gets the content, from the origin, in the manifest's layout.
        let completed = try stack.events.waitFor(topic: "transfer.completed", requestId: request.rawValue)
        #expect(completed.data["deviceId"]?.stringValue == device.deviceId)
        let local = try stack.get(content, via: device)
        #expect(local.ok && local.sources.map(\.kind) == [.local])
        #expect(try Data(contentsOf: URL(fileURLWithPath: try #require(local.path))) == Data(contentsOf: file))
    }

    /// Hole 7: `ferry get --output` made the agent write wherever the caller named, with the
    /// device's rights. Now only under its output directory, whatever `..` or link leads out.
    static func anAgentWritesOnlyUnderItsOutputDirectory(_ stack: Stack) throws {
        let device = try stack.startAgent("w")
        let content = try stack.publish(try stack.randomFile("written.bin", mebibytes: 1))
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-outside-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: outside) }
        let escape = stack.directory.appendingPathComponent("escape")
        try FileManager.default.createSymbolicLink(at: escape, withDestinationURL: outside)
        for path in [outside.appendingPathComponent("direct.bin").path, stack.directory.path + "/../\(outside.lastPathComponent)/dots.bin",
                     escape.appendingPathComponent("linked.bin").path] {
            let refused = try stack.ferry(["get", content.hex, "--agent", device.control, "--output", path])
            #expect(refused.status == 1 && refused.stderr.contains("output-outside-directory"), "\(path): \(refused.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside.path).isEmpty)
        #expect(stack.counter(try stack.status(device.control), "get.refused.output-outside-directory") == 3)
        // Inside it, a path is written as before.
        let inside = stack.directory.appendingPathComponent("inside.bin")
        let written = try stack.ferry(["get", content.hex, "--agent", device.control, "--output", inside.path])
        #expect(written.status == 0, "\(written.stderr)")
        #expect(FileManager.default.fileExists(atPath: inside.path))
    }

    /// Hole 7: an enrolled device could publish any topic under its own name, so a forged
    /// `fulfilment.recorded` reached the status page. The bus now takes from each kind of
    /// publisher only the topics docs/events.md gives it.
    static func aDevicePublishesOnlyItsOwnTopics(_ stack: Stack) throws {
        let device = try stack.startAgent("p")
        let keys = try DeviceKeys.loadOrCreate(directory: device.dataDirectory)
        let socket = try stack.context.socket(.pub)
        defer { socket.close() }
        try socket.makeCurveClient(try CurveKeyPair(secretKey: Array(keys.agreementSecretKey)), serverKey: try stack.fleetKey(.public, "eventbus"))
        try socket.connect(stack.eventsIn)
        let bus = stack.status["eventbus"]!
        let refusedBefore = stack.counter(try stack.status(bus), "refused")
        func event(_ topic: String, _ request: String) -> FerryEvent {
            FerryEvent(topic: topic, time: Timestamp.now(), publisher: "agent:\(device.deviceId)", seq: 1, requestId: request, sessionId: nil,
                       data: ["deviceId": .string(device.deviceId), "bytesFromPeers": JSONValue(1 << 30)])
        }
        // Each forged event goes out before the device's own, on the same connection, so once
        // an own one arrives every forged one before it has been judged.
        try waitUntil("the device's own topic to come through", timeout: 20) {
            try socket.send(try event("fulfilment.recorded", "req-forged").frames, dontWait: true)
            try socket.send(try event("transfer.progress", "req-own-topic").frames, dontWait: true)
            Thread.sleep(forTimeInterval: 0.1)
            return !stack.events.matching("transfer.progress").filter { $0.requestId == "req-own-topic" }.isEmpty
        }
        #expect(stack.events.matching("fulfilment.recorded").filter { $0.requestId == "req-forged" }.isEmpty)
        #expect(stack.counter(try stack.status(bus), "refused") > refusedBefore)
    }

    /// Hole 7: a device's signature covered the method and path only, and held for 5 minutes,
    /// so whoever saw a signed request could send it again, with another `Range` or body.
    static func aSignedRequestCoversItsRangeAndBodyAndIsTakenOnce(_ stack: Stack) throws {
        let device = try stack.startAgent("s")
        let keys = try DeviceKeys.loadOrCreate(directory: device.dataDirectory)
        let id = try DeviceID(device.deviceId)
        let content = try stack.publish(try stack.randomFile("signed.bin", mebibytes: 1))
        func sign(_ method: String, _ path: String, range: String? = nil, body: Data = Data()) throws -> String {
            try keys.authorization(deviceId: id, method: method, path: path, range: range, body: body, nowMilliseconds: SessionTokens.nowMilliseconds())
        }
        func reason(_ answer: Stack.HTTPResult) -> String { (try? JSONCoding.decoder.decode(ErrorBody.self, from: answer.body))?.reason ?? "" }
        let manifest = "/v1/content/\(content.hex)/manifest"
        let once = try sign("GET", manifest)
        #expect(try stack.http("GET", manifest, headers: ["Authorization": once]).status == 200)
        let again = try stack.http("GET", manifest, headers: ["Authorization": once])
        #expect(again.status == 401 && reason(again) == "replayed", "\(again.status) \(reason(again))")
        // A range signed is the range served; another one under the same signature is refused.
        let data = "/v1/content/\(content.hex)/data"
        let first = try sign("GET", data, range: "bytes=0-1023")
        let widened = try stack.http("GET", data, headers: ["Authorization": first, "Range": "bytes=0-1048575"])
        #expect(widened.status == 401 && reason(widened) == "device-auth")
        let asSigned = try stack.http("GET", data, headers: ["Authorization": try sign("GET", data, range: "bytes=0-1023"), "Range": "bytes=0-1023"])
        #expect(asSigned.status == 206 && asSigned.body.count == 1024)
        // A body signed is the body taken.
        let ask = try JSONCoding.encoder.encode(DeviceRequest(requestId: try RequestID("req-signed-body"), deviceId: id, contentId: content))
        let other = try JSONCoding.encoder.encode(DeviceRequest(requestId: try RequestID("req-swapped-body"), deviceId: id, contentId: content))
        let swapped = try stack.http("POST", "/v1/requests", body: other, headers: ["Authorization": try sign("POST", "/v1/requests", body: ask)])
        #expect(swapped.status == 401 && reason(swapped) == "device-auth")
        let metrics = String(decoding: try stack.http("GET", "/metrics").body, as: UTF8.self)
        #expect((Stack.sample(metrics, #"ferry_origin_refused_total{reason="replayed"}"#) ?? 0) >= 1)
    }

    /// Hole 7: overlay addresses are handed out in order and published before the link exists,
    /// and a link's connection was named by its address. An enrolled device that connected to
    /// the relay under the next addresses first kept the real parties out. Now, with keys, the
    /// relay binds each side to the device its token names, whatever routing id it shows.
    static func aSquatterOnTheNextOverlayAddressesKeepsNobodyOut(_ stack: Stack) throws {
        let holder = try stack.startAgent("sq-holder"), receiver = try stack.startAgent("sq-receiver"), squatter = try stack.startAgent("sq-squatter")
        let file = try stack.randomFile("squatted.bin", mebibytes: 2)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: holder).ok)
        try waitForHoldings(stack, holder, hold: content)

        let keys = try CurveKeyPair(secretKey: Array(try DeviceKeys.loadOrCreate(directory: squatter.dataDirectory).agreementSecretKey))
        let relayKey = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: stack.path("relay-1")), fileName: "relay.keys").agreementPublicKey
        let relay = stack.relays[0]
        let unknownBefore = try stack.status(relay).counters["drops"]?["unknown-session"]?.numberValue ?? 0
        var squatted: [Socket] = []
        defer { squatted.forEach { $0.close() } }
        for n in 1...128 {
            let socket = try stack.context.socket(.dealer)
            try socket.setIdentity("100.96.0.\(n)")
            try socket.makeCurveClient(keys, serverKey: Array(try #require(Data(base64Encoded: relayKey))))
            try socket.connect(relay)
            _ = try socket.send(messages: LinkFrame.messages(PacketHeader(kind: .credit, sessionId: SessionID.random(), sequence: 1)))
            squatted.append(socket)
        }
        // Every squatting connection is up once the relay has dropped the frame each sent.
        try waitUntil("the relay to hear from all 128 squatting connections", timeout: 30) {
            (try stack.status(relay).counters["drops"]?["unknown-session"]?.numberValue ?? 0) >= unknownBefore + 128
        }
        let got = try stack.get(content, via: receiver, output: stack.directory.appendingPathComponent("squatted-copy.bin"))
        #expect(got.ok && got.sources.map(\.kind) == [.peer], "the squatter kept the receiver off the relay: \(got.sources) \(got.error ?? "")")
        #expect(try Data(contentsOf: stack.directory.appendingPathComponent("squatted-copy.bin")) == Data(contentsOf: file))
    }
}
