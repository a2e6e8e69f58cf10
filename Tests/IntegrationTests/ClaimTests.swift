import FerryProtocol
import Foundation
import Testing

/// Waits until the matcher has heard that `agent` holds `content` (after `mark`: a matcher
/// restarted since must have heard it again, not an earlier one).
func waitForHoldings(_ stack: Stack, _ agent: Stack.Agent, hold content: ContentID, after mark: Int = 0) throws {
    try stack.events.waitFor("\(agent.name) to announce \(content.short)", after: mark) { event in
        event.topic == "holdings.updated" && event.data["deviceId"]?.stringValue == agent.deviceId
            && (event.data["contents"].map { "\($0)" }?.contains(content.hex) ?? false)
    }
}

@Suite struct ClaimEndToEnd {
    /// Steps (a) to (i): B gets content nobody holds from the origin; A then gets it from B
    /// through a relay, byte for byte, and the origin records one fulfilment naming B.
    @Test func aDownloadFromAPeerThroughARelayIsVerifiedAndReported() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let file = try stack.randomFile("content.bin", mebibytes: 24)
        let content = try stack.publish(file)
        let original = try Data(contentsOf: file)

        // Nobody holds it yet: the origin serves B, and the origin's record says so.
        let fromOrigin = try stack.get(content, via: b, output: stack.directory.appendingPathComponent("b.bin"))
        #expect(fromOrigin.ok, "B's download failed: \(fromOrigin.error ?? "")")
        #expect(fromOrigin.sources == [SourceBytes(kind: .origin, bytes: UInt64(original.count))])
        let bRequest = try #require(fromOrigin.requestId).rawValue
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: bRequest)
        try waitForHoldings(stack, b, hold: content)

        // A gets it from B through the relay.
        let output = stack.directory.appendingPathComponent("a.bin")
        let second = try stack.get(content, via: a, output: output)
        #expect(second.ok, "A's download failed: \(second.error ?? "")")
        #expect(try Data(contentsOf: output) == original)
        let request = try #require(second.requestId).rawValue
        #expect(second.sources.map(\.kind) == [.peer])
        #expect(second.sources.first?.device?.rawValue == b.deviceId)

        // The packets went through the relay: its counters carry every payload byte, once.
        let relay = try stack.status(stack.relays[0])
        #expect(stack.counter(relay, "payloadBytesForwarded") == Double(original.count))
        #expect(stack.counter(relay, "packetsForwarded") == Double((original.count + 65_535) / 65_536))
        #expect(stack.counter(relay, "dropped") == 0)

        // The events of A's request follow the claim.
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: request)
        let timeline = stack.events.forRequest(request)
        func position(_ topic: String, role: String? = nil) -> Int? {
            timeline.firstIndex { $0.topic == topic && (role == nil || $0.data["role"]?.stringValue == role) }
        }
        let steps: [(String, String?)] = [
            ("request.received", nil), ("match.found", nil), ("session.brokered", nil), ("link.spawned", "relay"),
            ("transfer.started", nil), ("transfer.progress", nil), ("transfer.completed", nil),
            ("fulfilment.recorded", nil), ("fulfilment.acknowledged", nil),
        ]
        let positions = steps.map { position($0.0, role: $0.1) }
        #expect(!positions.contains(nil), "missing steps in \(timeline.map(\.topic))")
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "out of order: \(timeline.map(\.topic))")
        #expect(position("link.spawned", role: "sender") != nil && position("link.spawned", role: "receiver") != nil)
        #expect(timeline.allSatisfy { $0.seq > 0 && !$0.time.isEmpty })
        let brokered = try #require(timeline.first { $0.topic == "session.brokered" })
        #expect(brokered.sessionId != nil)
        #expect(brokered.data["sender"]?.stringValue == b.deviceId)

        // Exactly one fulfilment for A's request, naming B as the source, checked against the relay.
        let records = try stack.fulfilments().filter { $0.requestId.rawValue == request }
        #expect(records.count == 1)
        let record = try #require(records.first)
        #expect(record.bytesFromPeers == UInt64(original.count) && record.bytesFromOrigin == 0)
        #expect(record.sources.first?.device?.rawValue == b.deviceId)
        #expect(record.verification == .matched)
        let bRecord = try #require(try stack.fulfilments().first { $0.requestId.rawValue == bRequest })
        #expect(bRecord.verification == .originOnly && bRecord.bytesFromOrigin == UInt64(original.count))

        // What an operator sees: every service serving, the relay, and half the bytes from a peer.
        let status = try stack.ferry(["status", "--broker", stack.brokerControl, "--origin", stack.originURL,
                                      "--intake-status", stack.status["intake"]!, "--matcher-status", stack.status["matcher"]!,
                                      "--reporter-status", stack.status["reporter"]!, "--eventbus-status", stack.status["eventbus"]!])
        #expect(status.status == 0, "\(status.stdout)")
        #expect(!status.stdout.contains("NOT SERVING"))
        #expect(status.stdout.contains("relays (1)") && status.stdout.contains(stack.relays[0]))
        #expect(status.stdout.contains("2 downloads, 24.0 MiB from peers, 24.0 MiB from the origin, offload ratio 50.0%"), "\(status.stdout)")
        print(status.stdout)
    }

    /// A retried request id is the same request: one session, one fulfilment.
    @Test func aRetriedRequestIdYieldsOneSessionAndOneFulfilment() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let content = try stack.publish(try stack.randomFile("content.bin", mebibytes: 8))
        #expect(try stack.get(content, via: b).ok)
        try waitForHoldings(stack, b, hold: content)

        // The device's request, sent to the origin twice with the same id, as a retry would be.
        let ask = try JSONCoding.encoder.encode(DeviceRequest(requestId: try RequestID("retry-1"), deviceId: try DeviceID(a.deviceId), contentId: content))
        #expect(try stack.http("POST", "/v1/requests", body: ask).status == 202)
        try stack.events.waitFor(topic: "session.brokered", requestId: "retry-1")
        #expect(try stack.http("POST", "/v1/requests", body: ask).status == 202)
        try stack.events.waitFor(topic: "request.retried", requestId: "retry-1")
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: "retry-1")
        #expect(try stack.http("POST", "/v1/requests", body: ask).status == 202)
        try stack.events.waitFor("the third attempt to be answered") {
            $0.topic == "session.resent" && $0.requestId == "retry-1" && $0.data["state"]?.stringValue == "finished"
        }

        #expect(stack.events.matching("session.brokered", requestId: "retry-1").count == 1)
        #expect(stack.events.matching("fulfilment.recorded", requestId: "retry-1").count == 1)
        #expect(try stack.fulfilments().filter { $0.requestId.rawValue == "retry-1" }.count == 1)
        // The device got the content the request was made for, on its behalf.
        #expect(try stack.status(a.control).counters["holdings"].map { "\($0)" }?.contains(content.hex) == true)
    }

    /// A request for content that doesn't exist, and malformed requests, get a clear error
    /// event and leave no session, file or ledger row behind.
    @Test func unknownContentAndMalformedRequestsAreRefusedCleanly() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let a = try stack.startAgent("a")
        let unknown = try ContentID(String(repeating: "0f", count: 32))

        // Through a device: the agent finds no manifest and says so.
        let result = try stack.ferry(["get", unknown.hex, "--agent", a.control])
        #expect(result.status == 1)
        #expect(result.stderr.contains("unknown-content"))
        let failed = try stack.events.waitFor(topic: "transfer.failed")
        #expect(failed.data["reason"]?.stringValue?.contains("unknown-content") == true)
        // Straight to the origin: refused with a reason and an event.
        let ask = try JSONCoding.encoder.encode(DeviceRequest(requestId: try RequestID("ghost-1"), deviceId: try DeviceID(a.deviceId), contentId: unknown))
        let answer = try stack.http("POST", "/v1/requests", body: ask)
        #expect(answer.status == 404)
        #expect(try JSONCoding.decoder.decode(ErrorBody.self, from: answer.body).reason == "unknown-content")
        let rejected = try stack.events.waitFor(topic: "request.rejected", requestId: "ghost-1")
        #expect(rejected.data["reason"]?.stringValue == "unknown-content")
        #expect(try stack.http("POST", "/v1/requests", body: Data("{}".utf8)).status == 400)

        // Straight to intake, as a misbehaving server would: bad JSON, a missing field, a bad URL.
        try stack.pushToIntake([Data("ferry/1".utf8), Data("download.request".utf8), Data("{this is not json".utf8)])
        try stack.pushToIntake([Data("ferry/1".utf8), Data("download.request".utf8), Data(#"{"requestId":"bad-2","deviceId":"dev-x"}"#.utf8)])
        var invalid = DownloadRequest(requestId: try RequestID("bad-3"), deviceId: try DeviceID("dev-x"),
                                      content: ContentSummary(contentId: unknown, size: 10, chunkSize: 262_144, packetSize: 65_536),
                                      server: "gopher://nowhere")
        try stack.pushToIntake(try invalid.frames())
        invalid.server = stack.originURL
        try stack.pushToIntake([Data("ferry/7".utf8), Data("download.request".utf8), try invalid.frames()[2]])
        try waitUntil("four rejections from intake") {
            stack.events.matching("request.rejected").filter { $0.publisher == "intake" }.count >= 4
        }
        let fromIntake = stack.events.matching("request.rejected").filter { $0.publisher == "intake" }
        #expect(Set(fromIntake.compactMap { $0.data["reason"]?.stringValue }) == ["malformed", "invalid", "unsupported-version"])
        #expect(fromIntake.contains { $0.requestId == "bad-2" })

        // Nothing was started for any of them: no session, no file, no ledger row.
        #expect(stack.events.matching("session.brokered").isEmpty)
        #expect(stack.events.matching("match.found").isEmpty && stack.events.matching("match.none").isEmpty)
        #expect(try stack.fulfilments().isEmpty)
        let store = a.dataDirectory.appendingPathComponent("store")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: store.path)) ?? []).isEmpty)
        // Intake is still serving.
        #expect(try stack.status(stack.brokerControl).service == "broker")

        // Publishing: a name with a slash is refused; the same bytes again are the same content.
        let file = try stack.randomFile("twice.bin", mebibytes: 1)
        let bad = try stack.ferry(["publish", "--all-devices", "--origin", stack.originURL, "--name", "../evil", file.path])
        #expect(bad.status == 1 && bad.stderr.contains("bad-name"))
        let first = try stack.publish(file)
        let again = try stack.ferry(["publish", "--json", "--all-devices", "--origin", stack.originURL, "--name", "other-name", file.path])
        #expect(again.status == 0 && again.stdout.contains(first.hex))
        #expect(stack.events.matching("content.published").count == 1)
    }

    /// A device configured with another key than the origin's refuses the origin's manifests:
    /// nothing is trusted before the signature is.
    @Test func aManifestNotSignedByTheConfiguredOriginIsRefused() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let impostorKey = "8xSOmL6r2VdM4uMPbvgqJzX8xwVYH3J4fTQh1hYp0aE="  // a valid Ed25519 public key, not the origin's
        let device = try stack.startAgent("d", extra: ["--origin-public-key", impostorKey])
        let content = try stack.publish(try stack.randomFile("signed.bin", mebibytes: 1))
        let result = try stack.ferry(["get", content.hex, "--agent", device.control])
        #expect(result.status == 1 && result.stderr.contains("manifest-signature"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: device.dataDirectory.appendingPathComponent("store/\(content.hex)").path))
        #expect(stack.events.matching("request.received").isEmpty)  // refused before any request was placed
    }

    /// The agent's control socket gets content onto the device on anyone's say-so, so it refuses
    /// to listen anywhere but locally.
    /// Only the operator publishes and withdraws: without the token, or with a wrong one, the
    /// origin refuses and says what it needs, and nothing changes.
    @Test func publishingAndWithdrawingNeedTheOperatorToken() throws {
        let stack = try Stack(relays: 0)
        defer { stack.stop() }
        let file = try stack.randomFile("content.bin", mebibytes: 1)
        for token in ["", String(repeating: "x", count: 43)] {
            let refused = try stack.run("ferry", ["publish", "--quiet", "--all-devices", "--origin", stack.originURL, "--operator-token", token, file.path])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("operator-credential"), "\(refused.stderr)")
        }
        #expect(try stack.http("GET", "/v1/content").body == Data("[]".utf8))

        let content = try stack.publish(file)
        let withdraw = try stack.run("ferry", ["withdraw", content.hex, "--origin", stack.originURL, "--operator-token", "not-the-operator-token"])
        #expect(withdraw.status == 1 && withdraw.stderr.contains("operator-credential"))
        #expect(try stack.http("GET", "/v1/content/\(content.hex)/manifest").status == 200)
        let withdrawn = try stack.ferry(["withdraw", content.hex, "--origin", stack.originURL])
        #expect(withdrawn.status == 0, "\(withdrawn.stderr)")
        #expect(try stack.http("GET", "/v1/content/\(content.hex)/manifest").status == 404)
    }

    @Test func anAgentRefusesANetworkFacingControlSocket() throws {
        let process = Process()
        process.executableURL = Stack.binaries.appendingPathComponent("ferry-agent")
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-agent-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        process.arguments = ["--control", "tcp://0.0.0.0:\(Ports.free())", "--data-dir", data.path]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0)
        #expect(stderr.contains("FERRY_AGENT_CONTROL"), "\(stderr)")
    }
}
