import FerryProtocol
import Foundation
import Testing

/// The fault scenarios of `Scripts/faults`, one test each, on real processes. Every fault is
/// injected at a point the test waits for (an event, a status), never by racing a timer, and
/// each test prints one `figures:` line that the script shows beside PASS or FAIL.
@Suite struct FaultScenarios {
    /// Short heartbeats, so the broker notices a lost relay or device in about a second.
    static let heartbeat = 250

    @Test func relayKilledMidTransfer() throws {
        let stack = try Stack(relays: 2, heartbeatMilliseconds: Self.heartbeat)
        defer { stack.stop() }
        let b = try stack.startAgent("b", extra: ["--upload-rate", "16M"])
        let a = try stack.startAgent("a")
        let (file, content) = try heldBy([b], stack, mebibytes: 48)

        let get = try BackgroundGet(stack, content, via: a)
        let brokered = try stack.events.waitFor("A's session") { $0.topic == "session.brokered" && $0.data["receiver"]?.stringValue == a.deviceId }
        let request = try #require(brokered.requestId)
        try waitForPeerProgress(stack, a, request: request)
        let relayEndpoint = brokered.data["relayEndpoint"]?.stringValue ?? ""
        let relayName = "relay-\((stack.relays.firstIndex(of: relayEndpoint) ?? -1) + 1)"
        stack.kill(relayName)
        let killedAt = Date()

        let repathed = try stack.events.waitFor(topic: "session.repathed", requestId: request, timeout: 30)
        #expect(repathed.data["reason"]?.stringValue == "relay-lost")
        #expect(repathed.data["relayId"]?.stringValue != repathed.data["previousRelayId"]?.stringValue)
        try stack.events.waitFor("A's link on the new path") {
            $0.topic == "link.spawned" && $0.requestId == request && $0.data["role"]?.stringValue == "receiver" && $0.sessionId != brokered.sessionId
        }
        let recovered = Date().timeIntervalSince(killedAt)
        // docs/operations.md: the broker notices after 5 heartbeats (250 ms here), then repaths.
        #expect(recovered <= 5 * Double(Self.heartbeat) / 1000 + 2, "A's new link came \(recovered) s after the relay was killed")

        let result = try get.finish()
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: get.output) == Data(contentsOf: file))
        let size = UInt64(48 << 20)
        #expect(result.sources.allSatisfy { $0.kind == .peer && $0.device?.rawValue == b.deviceId }, "\(result.sources)")
        #expect(result.sources.reduce(0) { $0 + $1.bytes } == size)

        // Bytes sent again because of the kill: what B sent over both sessions beyond the
        // content, and what reached A more than once (a chunk half-assembled when the relay died).
        let completed = try stack.events.waitFor(topic: "transfer.completed", requestId: request)
        let received = UInt64(try #require(completed.data["peerPayloadBytes"]?.numberValue))
        try #require(received >= size, "A counted \(received) peer bytes for \(size) it holds")
        let receivedAgain = received - size
        // B's sender links close on their own time (the dead session's when it idles out), so
        // its figures are read once both have reported, never subtracted from a partial sum.
        func senderBytes() -> UInt64 {
            stack.events.matching("link.closed", requestId: request)
                .filter { $0.data["role"]?.stringValue == "sender" }.reduce(0) { $0 + UInt64($1.data["payloadBytes"]?.numberValue ?? 0) }
        }
        try waitUntil("B's sender links to report at least the content", timeout: 60) { senderBytes() >= size }
        let window = UInt64(32 * 65_536), chunk = try chunkSize(stack, content)
        let sentAgain = senderBytes() - size
        #expect(receivedAgain <= window, "A received \(receivedAgain) bytes twice; one window is \(window)")
        // Lost with the relay: at most a window in flight, plus the part of the chunk A had begun.
        #expect(sentAgain <= window + chunk, "B sent \(sentAgain) bytes again")
        // Counted once the origin has acknowledged the reporter's delivery, not before.
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: request)
        let fulfilments = try fulfilmentsFor(stack, request)
        #expect(fulfilments == 1)
        figures("recovered in \(seconds(recovered)) (relay killed to A's new link); re-sent \(mib(sentAgain)) by B, \(mib(receivedAgain)) received twice by A (window \(mib(window))); fulfilments \(fulfilments)")
    }

    @Test func seedingDeviceKilledMidTransfer() throws {
        let stack = try Stack(relays: 1, heartbeatMilliseconds: Self.heartbeat)
        defer { stack.stop() }
        let b = try stack.startAgent("b", extra: ["--upload-rate", "16M"])
        let c = try stack.startAgent("c", extra: ["--upload-rate", "16M"])
        let a = try stack.startAgent("a")
        let (file, content) = try heldBy([b, c], stack, mebibytes: 48)

        let get = try BackgroundGet(stack, content, via: a)
        let brokered = try stack.events.waitFor("A's session") { $0.topic == "session.brokered" && $0.data["receiver"]?.stringValue == a.deviceId }
        let request = try #require(brokered.requestId)
        let (victim, survivor) = brokered.data["sender"]?.stringValue == b.deviceId ? (b, c) : (c, b)
        try waitForPeerProgress(stack, a, request: request)
        stack.kill("agent-\(victim.name)")
        let killedAt = Date()
        // Both held it, so each sent a stripe: the killed one's stripe gets a new path from the
        // survivor, on the broker missing its heartbeats (`sender-lost`) or, if the survivor's
        // stripe is done first, on the receiver's word that the stripe is far behind
        // (`slower-stripe`), whichever comes first.
        let repathed = try stack.events.waitFor("the killed seeder's session to get a new path", timeout: 30) {
            $0.topic == "session.repathed" && $0.sessionId == brokered.sessionId
        }
        let recovered = Date().timeIntervalSince(killedAt)
        #expect(["sender-lost", "slower-stripe"].contains(repathed.data["reason"]?.stringValue ?? ""), "\(repathed.data)")
        #expect(repathed.data["sender"]?.stringValue == survivor.deviceId)

        let result = try get.finish()
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: get.output) == Data(contentsOf: file))
        let fromVictim = result.sources.filter { $0.device?.rawValue == victim.deviceId }.reduce(0) { $0 + $1.bytes }
        let fromSurvivor = result.sources.filter { $0.device?.rawValue == survivor.deviceId }.reduce(0) { $0 + $1.bytes }
        let fromOrigin = result.sources.filter { $0.kind == .origin }.reduce(0) { $0 + $1.bytes }
        #expect(fromVictim > 0 && fromSurvivor > 0)
        #expect(fromVictim + fromSurvivor + fromOrigin == UInt64(48 << 20))

        // The origin's record says the same, source by source.
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: request)
        let record = try #require(try stack.fulfilments().first { $0.requestId.rawValue == request })
        #expect(record.bytesFromPeers == fromVictim + fromSurvivor)
        #expect(Set(record.sources.compactMap { $0.device?.rawValue }) == [victim.deviceId, survivor.deviceId])
        figures("recovered in \(seconds(recovered)) (sender killed to new path); \(mib(fromVictim)) from the killed seeder, \(mib(fromSurvivor)) from the other holder, \(mib(fromOrigin)) from the origin; fulfilments \(try fulfilmentsFor(stack, request))")
    }

    @Test func downloadingDeviceKilledAndRestarted() throws {
        let stack = try Stack(relays: 1, heartbeatMilliseconds: Self.heartbeat)
        defer { stack.stop() }
        let b = try stack.startAgent("b", extra: ["--upload-rate", "16M"])
        var a = try stack.startAgent("a")
        let (file, content) = try heldBy([b], stack, mebibytes: 48)

        let first = try BackgroundGet(stack, content, via: a)
        let brokered = try stack.events.waitFor("A's session") { $0.topic == "session.brokered" && $0.data["receiver"]?.stringValue == a.deviceId }
        let request = try #require(brokered.requestId)
        // Killed once the progress it saved on disk (a byte a chunk, 1 when verified) shows a quarter.
        let bitmap = a.dataDirectory.appendingPathComponent("store/\(content.hex)/verified")
        let chunk = try chunkSize(stack, content)
        var savedBefore: UInt64 = 0
        // The output is copied while the download runs, under a temporary name beside it.
        func temporaryOutputs() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: stack.directory.path)) ?? [])
                .filter { $0.hasPrefix(".\(first.output.lastPathComponent).") && $0.hasSuffix(".partial") }
        }
        try waitUntil("A to save a quarter verified, and its output's copy begun", timeout: 60) {
            savedBefore = UInt64(try Data(contentsOf: bitmap).filter { $0 == 1 }.count) * chunk
            return savedBefore >= UInt64(12 << 20) && !temporaryOutputs().isEmpty
        }
        stack.kill("agent-a")
        // Its get would wait out its timeout for an agent that is gone; a SIGTERM from here
        // did not end it (measured: it ran the whole 120 s).
        Glibc.kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        // The kill left A's temporary output; the next start removes it, and only what A wrote
        // down itself: another's temporary output in the same directory stays.
        #expect(temporaryOutputs().count == 1)
        let anothers = stack.directory.appendingPathComponent(".someone-elses.bin.0A1B2C3D.partial")
        try Data("not A's".utf8).write(to: anothers)
        let restartedAt = Date()
        a = try stack.restartAgent(a)
        #expect(temporaryOutputs() == [], "the killed get's temporary output is still there")
        #expect(FileManager.default.fileExists(atPath: anothers.path), "another's temporary output was removed")

        let result = try stack.get(content, via: a, output: stack.directory.appendingPathComponent("a-again.bin"))
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: stack.directory.appendingPathComponent("a-again.bin")) == Data(contentsOf: file))
        let local = result.sources.filter { $0.kind == .local }.reduce(0) { $0 + $1.bytes }
        let fetched = result.sources.filter { $0.kind != .local }.reduce(0) { $0 + $1.bytes }
        #expect(local >= savedBefore, "resumed with \(local) bytes; \(savedBefore) were saved as verified before the kill")
        #expect(local + fetched == UInt64(48 << 20))
        let second = try #require(result.requestId).rawValue
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: second)
        let records = try stack.fulfilments().filter { $0.deviceId.rawValue == a.deviceId }
        #expect(records.count == 1, "\(records.count) fulfilments for A")
        #expect(stack.events.matching("fulfilment.recorded", requestId: request).isEmpty, "the killed request was reported")
        figures("resumed with \(mib(local)) already verified (\(mib(savedBefore)) saved before the kill), fetched \(mib(fetched)); done \(seconds(Date().timeIntervalSince(restartedAt))) after restart; fulfilments \(records.count)")
    }

    @Test func reporterKilledBeforeTheServerAcknowledged() throws {
        let stack = try Stack(relays: 1, heartbeatMilliseconds: Self.heartbeat)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let (file, content) = try heldBy([b], stack, mebibytes: 8)

        // The origin is frozen once A has its manifest and is taking the content from B, so the
        // reporter records the fulfilment but the server cannot acknowledge it.
        let get = try BackgroundGet(stack, content, via: a)
        let started = try stack.events.waitFor("A's transfer from B") {
            $0.topic == "transfer.started" && $0.data["deviceId"]?.stringValue == a.deviceId && $0.data["source"]?.stringValue == b.deviceId
        }
        /// Signed deliveries the origin answered: recorded, or a fulfilment it had already.
        func answered() throws -> (recorded: Double, duplicate: Double) {
            let metrics = String(decoding: try stack.http("GET", "/metrics").body, as: UTF8.self)
            return (Stack.sample(metrics, "ferry_origin_fulfilments_total") ?? 0, Stack.sample(metrics, "ferry_origin_fulfilments_duplicate_total") ?? 0)
        }
        // B's own fulfilment (from the origin) is acknowledged before the count starts.
        try stack.events.waitFor("B's fulfilment to be acknowledged") {
            $0.topic == "fulfilment.acknowledged" && $0.requestId != started.requestId
        }
        let before = try answered()
        stack.signal("origin", SIGSTOP)
        var originFrozen = true
        defer { if originFrozen { stack.signal("origin", SIGCONT) } }
        let request = try #require(started.requestId)
        #expect(try get.finish().ok)
        #expect(try Data(contentsOf: get.output) == Data(contentsOf: file))
        try stack.events.waitFor(topic: "fulfilment.recorded", requestId: request, timeout: 30)
        // The killed reporter's delivery is in the frozen origin's hands (bytes waiting in its
        // socket), so it arrives late, beside the restarted reporter's: the origin must keep one.
        try waitUntil("the delivery to wait in the origin's socket", timeout: 15) { try Self.bytesWaiting(atPort: stack.originPort) > 0 }
        stack.kill("reporter")
        #expect(stack.events.matching("fulfilment.acknowledged", requestId: request).isEmpty)

        stack.signal("origin", SIGCONT)
        originFrozen = false
        let restartedAt = Date()
        try stack.restart("reporter")
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: request, timeout: 60)
        let delivered = Date().timeIntervalSince(restartedAt)
        // Both deliveries answered, the late one and the restarted reporter's, before counting.
        try waitUntil("the origin to answer both deliveries", timeout: 30) {
            let now = try answered()
            return now.recorded + now.duplicate - before.recorded - before.duplicate >= 2
        }
        let after = try answered()
        #expect(after.recorded - before.recorded == 1, "\(before) -> \(after)")
        let records = try fulfilmentsFor(stack, request)
        #expect(records == 1)
        let recorded = stack.events.matching("fulfilment.recorded", requestId: request).count
        figures("acknowledged \(seconds(delivered)) after the reporter restarted; recorded \(recorded)x by the reporter, \(records) fulfilment at the origin, \(Int(try answered().duplicate - before.duplicate)) delivery answered duplicate")
    }

    @Test func controlPlaneRestartedWithARequestPending() throws {
        let stack = try Stack(relays: 1, heartbeatMilliseconds: Self.heartbeat)
        defer { stack.stop() }
        // B announces once a minute: the restarted matcher hears what it holds at once, because
        // an agent announces whenever the matcher subscribes (again).
        let b = try stack.startAgent("b", extra: ["--announce-ms", "60000"])
        let a = try stack.startAgent("a", extra: ["--plan-deadline-ms", "120000"])
        let (file, content) = try heldBy([b], stack, mebibytes: 8)

        // Matcher and broker down: intake takes A's request and queues it for the matcher. Then
        // intake dies too, and the request with it; only A's retry can bring it back.
        for service in ["matcher", "broker"] { stack.kill(service) }
        let get = try BackgroundGet(stack, content, via: a)
        let received = try stack.events.waitFor("intake to take A's request") {
            $0.topic == "request.received" && $0.data["deviceId"]?.stringValue == a.deviceId
        }
        let request = try #require(received.requestId)
        stack.kill("intake")
        let restartedAt = Date()
        for service in ["intake", "broker"] { try stack.restart(service) }
        try stack.events.waitFor("both devices back at the broker") { _ in
            (try? stack.status(stack.brokerControl)).map { stack.counter($0, "agents") >= 2 } ?? false
        }
        let beforeMatcher = stack.events.mark
        try stack.restart("matcher")
        try waitForHoldings(stack, b, hold: content, after: beforeMatcher)

        let result = try get.finish()
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: get.output) == Data(contentsOf: file))
        #expect(result.requestId?.rawValue == request)
        #expect(result.sources.map(\.kind) == [.peer], "the retry was not served by a peer: \(result.sources)")
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: request, timeout: 30)
        let sessions = stack.events.matching("session.brokered", requestId: request).count
        let records = try fulfilmentsFor(stack, request)
        #expect(sessions == 1)
        #expect(records == 1)
        let placed = stack.events.matching("request.received", requestId: request).count + stack.events.matching("request.retried", requestId: request).count
        figures("done \(seconds(Date().timeIntervalSince(restartedAt))) after intake, matcher and broker restarted; request id placed \(placed)x by A's retries; sessions \(sessions), fulfilments \(records), from a peer")
    }

    @Test func controlPlaneDownFallsBackToTheOrigin() throws {
        let stack = try Stack(relays: 1, heartbeatMilliseconds: Self.heartbeat)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a", extra: ["--plan-deadline-ms", "3000"])
        let (file, content) = try heldBy([b], stack, mebibytes: 8)
        // Intake still takes the request (with intake down too the origin refuses it at once and
        // the agent goes to the origin without waiting), but no plan ever comes.
        for service in ["matcher", "broker"] { stack.kill(service) }

        let started = Date()
        let result = try stack.get(content, via: a, output: stack.directory.appendingPathComponent("a.bin"))
        let took = Date().timeIntervalSince(started)
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: stack.directory.appendingPathComponent("a.bin")) == Data(contentsOf: file))
        #expect(result.sources.map(\.kind) == [.origin])
        #expect(took >= 3 && took < 10, "took \(took) s with a 3 s plan deadline")
        let request = try #require(result.requestId).rawValue
        let fallback = try stack.events.waitFor(topic: "transfer.started", requestId: request)
        #expect(fallback.data["reason"]?.stringValue == "no-plan-in-time")
        // With no broker record there is no trustworthy server to report to: the reporter says so
        // rather than posting where the device says. The origin served every byte itself.
        let refused = try stack.events.waitFor(topic: "fulfilment.rejected", requestId: request, timeout: 30)
        #expect(try fulfilmentsFor(stack, request) == 0)
        figures("plan deadline 3 s: the download took \(seconds(took)), all from the origin; no fulfilment (\(refused.data["reason"]?.stringValue ?? "?"))")
    }

    @Test func aDeviceThatVanishesIsNotMatchedAgain() throws {
        let stack = try Stack(relays: 1, heartbeatMilliseconds: Self.heartbeat)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let (file, content) = try heldBy([b], stack, mebibytes: 4)

        stack.kill("agent-b")
        let killedAt = Date()
        try stack.events.waitFor("the matcher to forget B") {
            $0.topic == "device.lost" && $0.publisher == "matcher" && $0.data["deviceId"]?.stringValue == b.deviceId
        }
        let forgotten = Date().timeIntervalSince(killedAt)
        // docs/operations.md: forgotten after 3 announcement intervals (0.5 s here); the rest is
        // one matcher poll and the event's way to the test.
        #expect(forgotten <= 3 * 0.5 + 1.5, "the matcher forgot the vanished holder after \(forgotten) s")
        let result = try stack.get(content, via: a, output: stack.directory.appendingPathComponent("a.bin"))
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: stack.directory.appendingPathComponent("a.bin")) == Data(contentsOf: file))
        #expect(result.sources.map(\.kind) == [.origin])
        let request = try #require(result.requestId).rawValue
        let none = try stack.events.waitFor(topic: "match.none", requestId: request)
        #expect(stack.events.matching("session.brokered", requestId: request).isEmpty)
        figures("holdings expired \(seconds(forgotten)) after the device vanished (announcing every 0.5 s); next request: \(none.data["reason"]?.stringValue ?? "?"), served by the origin")
    }

    @Test func aDeviceSendingCorruptChunksIsBanned() throws {
        let stack = try Stack(relays: 1, heartbeatMilliseconds: Self.heartbeat)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let d = try stack.startAgent("d")
        let (file, content) = try heldBy([b], stack, mebibytes: 16)

        // B's copy rots on disk: three chunks get a flipped byte each. B doesn't know.
        let chunk = try chunkSize(stack, content)
        let rotten = [20, 21, 44]
        let stored = try FileHandle(forUpdating: b.dataDirectory.appendingPathComponent("store/\(content.hex)/data"))
        for index in rotten {
            try stored.seek(toOffset: UInt64(index) * chunk + 4097)
            let byte = try stored.read(upToCount: 1)?.first ?? 0
            try stored.seek(toOffset: UInt64(index) * chunk + 4097)
            try stored.write(contentsOf: [byte ^ 0xFF])
        }
        try stored.close()

        let result = try stack.get(content, via: a, output: stack.directory.appendingPathComponent("a.bin"))
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: stack.directory.appendingPathComponent("a.bin")) == Data(contentsOf: file))
        let request = try #require(result.requestId).rawValue
        let rejected = stack.events.matching("transfer.chunk_rejected", requestId: request)
        #expect(rejected.map { $0.data["chunk"]?.numberValue } == [Double(rotten[0])], "\(rejected.map(\.data))")
        #expect(rejected.allSatisfy { $0.data["sender"]?.stringValue == b.deviceId })
        let banned = try stack.events.waitFor(topic: "device.banned", requestId: request)
        #expect(banned.data["deviceId"]?.stringValue == b.deviceId && banned.data["contentId"]?.stringValue == content.hex)
        let fromB = result.sources.filter { $0.device?.rawValue == b.deviceId }.reduce(0) { $0 + $1.bytes }
        let fromOrigin = result.sources.filter { $0.kind == .origin }.reduce(0) { $0 + $1.bytes }
        #expect(fromB == UInt64(rotten[0]) * chunk, "the chunks before the first bad one came from B")

        // B still announces the content, but is never chosen to send it again.
        let second = try stack.get(content, via: d, output: stack.directory.appendingPathComponent("d.bin"))
        #expect(second.ok)
        #expect(try Data(contentsOf: stack.directory.appendingPathComponent("d.bin")) == Data(contentsOf: file))
        #expect(!second.sources.contains { $0.device?.rawValue == b.deviceId }, "\(second.sources)")
        let dSource = second.sources.map { $0.device?.rawValue == a.deviceId ? "A" : $0.kind.rawValue }.joined(separator: "+")
        figures("\(rejected.count) bad chunk detected and not written, \(mib(fromB)) good from B then \(mib(fromOrigin)) from the origin; B banned for the content; the next device got it from \(dSource)")
    }
}

// MARK: helpers of the fault scenarios

/// Publishes a fresh file and has each of `holders` get it from the origin and announce it.
private func heldBy(_ holders: [Stack.Agent], _ stack: Stack, mebibytes: Int) throws -> (URL, ContentID) {
    let file = try stack.randomFile("content.bin", mebibytes: mebibytes)
    let content = try stack.publish(file)
    for holder in holders {
        let result = try stack.get(content, via: holder)
        guard result.ok else { throw StackError("\(holder.name) could not get the content: \(result.error ?? "")") }
        try waitForHoldings(stack, holder, hold: content)
    }
    return (file, content)
}

/// `ferry get` running while the test injects a fault.
private struct BackgroundGet {
    let process = Process()
    let stdout = Pipe()
    let output: URL

    init(_ stack: Stack, _ content: ContentID, via agent: Stack.Agent) throws {
        output = stack.directory.appendingPathComponent("\(agent.name)-\(UUID().uuidString.prefix(6)).bin")
        process.executableURL = Stack.binaries.appendingPathComponent("ferry")
        process.arguments = ["get", content.hex, "--agent", agent.control, "--output", output.path, "--json", "--timeout", "120"]
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func finish() throws -> GetResult {
        let printed = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard let line = String(decoding: printed, as: UTF8.self).split(separator: "\n").last,
              let result = try? JSONCoding.decoder.decode(GetResult.self, from: Data(line.utf8)) else {
            throw StackError("ferry get printed no result (exit \(process.terminationStatus))")
        }
        return result
    }
}

/// Waits for the first progress milestone of a peer transfer: the fault lands mid-transfer.
private func waitForPeerProgress(_ stack: Stack, _ agent: Stack.Agent, request: String) throws {
    try stack.events.waitFor("\(agent.name) to be a quarter through", timeout: 60) {
        $0.topic == "transfer.progress" && $0.requestId == request && $0.data["source"]?.stringValue?.hasPrefix("peer:") == true
    }
}

private func downloadTotal(_ stack: Stack, _ agent: Stack.Agent) throws -> UInt64 {
    guard case .array(let downloads)? = try stack.status(agent.control).counters["downloadProgress"] else { return 0 }
    return UInt64(downloads.first?["totalBytes"]?.numberValue ?? 0)
}

private func chunkSize(_ stack: Stack, _ content: ContentID) throws -> UInt64 {
    UInt64(try JSONCoding.decoder.decode(Manifest.self, from: stack.http("GET", "/v1/content/\(content.hex)/manifest").body).chunkSize)
}

private func fulfilmentsFor(_ stack: Stack, _ request: String) throws -> Int {
    try stack.fulfilments().filter { $0.requestId.rawValue == request }.count
}

/// The line `Scripts/faults` prints beside the scenario's name and verdict.
extension FaultScenarios {
    /// Bytes received but not yet read on the connections to a listening port, from the
    /// kernel's view (`ss`): a frozen server's unread requests.
    static func bytesWaiting(atPort port: UInt16) throws -> Int {
        let ss = Process()
        ss.executableURL = URL(fileURLWithPath: "/usr/bin/ss")
        ss.arguments = ["-Htn", "state", "established", "( sport = :\(port) )"]
        let out = Pipe()
        ss.standardOutput = out
        try ss.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ss.waitUntilExit()
        // Columns: Recv-Q Send-Q Local Peer.
        return text.split(separator: "\n").compactMap { $0.split(separator: " ").first.flatMap { Int($0) } }.reduce(0, +)
    }
}

private func figures(_ text: String) { print("figures: \(text)") }
private func seconds(_ value: TimeInterval) -> String { String(format: "%.2f s", value) }
private func mib(_ bytes: UInt64) -> String { String(format: "%.2f MiB", Double(bytes) / 1_048_576) }
