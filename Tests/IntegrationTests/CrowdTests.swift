import FerryProtocol
import Foundation
import Testing

@Suite struct Crowd {
    /// A holder of 6 MiB of new content and four devices, every upload capped at 1 MiB/s so a
    /// crowd's transfer is still running when the test acts.
    static func release(_ stack: Stack, _ name: String) throws -> (holder: Stack.Agent, crowd: [Stack.Agent], file: URL, content: ContentID) {
        let capped = ["--upload-rate", "1M"]
        let holder = try stack.startAgent("h", extra: capped)
        let crowd = try ["a", "b", "c", "d"].map { try stack.startAgent($0, extra: capped) }
        let file = try stack.randomFile(name, mebibytes: 6)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: holder).ok)
        try waitForHoldings(stack, holder, hold: content)
        return (holder, crowd, file, content)
    }

    /// Waits for a fulfilment of each of `devices`; each is `matched`, none of it from the origin.
    func expectFulfilledFromPeers(_ stack: Stack, _ devices: Set<String>) throws {
        try waitUntil("the fulfilments of \(devices.count) devices", timeout: 60) {
            try stack.fulfilments().filter { devices.contains($0.deviceId.rawValue) }.count == devices.count
        }
        #expect(try stack.fulfilments().filter { devices.contains($0.deviceId.rawValue) }.allSatisfy {
            $0.verification == .matched && $0.bytesFromOrigin == 0
        })
    }

    /// A release: four devices ask at once for content that one holder has, every device's
    /// upload capped so the transfer is still running when the test acts. The holder feeds one
    /// of them; each of the others gets it from a device still getting it itself, chunk by chunk
    /// as that device verifies them. A device in the middle of the chain is killed: the one it
    /// fed is re-pathed to the device ahead of it, and every survivor ends with the same bytes,
    /// none from the origin.
    @Test func aCrowdIsChainedAndADeviceKilledMidwayIsRoutedAround() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let (holder, crowd, file, content) = try Self.release(stack, "release.bin")

        let run = try CrowdRun(stack, content, crowd: crowd)
        let (mark, sourceOf) = (run.mark, run.sourceOf)
        #expect(sourceOf.values.filter { $0 == holder.deviceId }.count == 1, "the holder feeds one device: \(sourceOf)")
        #expect(run.found.filter { $0.data["stillGetting"] == .bool(true) }.count == 3, "\(sourceOf)")
        #expect(Set(sourceOf.values).count == 4, "each device feeds at most one: \(sourceOf)")
        // The operator sees the chain: the matcher's status lists the swarm, who feeds whom.
        /// Each member of the swarm in the matcher's status, and who feeds it; none once every
        /// member holds the content whole.
        func fedBy() throws -> [String: String] {
            let swarms = try stack.status(stack.status["matcher"]!).counters["swarms"]
            let swarm = swarms.flatMap { if case .array(let all) = $0 { all.first { $0["contentId"]?.stringValue == content.hex } } else { nil } }
            guard case .array(let members)? = swarm?["members"] else { return [:] }
            return Dictionary(members.compactMap { member in member["deviceId"]?.stringValue.map { ($0, member["from"]?.stringValue ?? "") } }) { a, _ in a }
        }
        let shownFirst = try fedBy()
        #expect(shownFirst == sourceOf, "the status shows \(shownFirst), the matches said \(sourceOf)")
        // And the status page shows it, from the events alone: who gets it from whom, and that
        // the origin sent only the holder's copy.
        // The view follows the event stream: wait until it has every device's start.
        var shown: [String: Any] = [:]
        try waitUntil("the status page to show every device's source", timeout: 10) {
            let live = try stack.liveView()
            shown = (live["swarms"] as? [[String: Any]])?.first { $0["contentId"] as? String == content.hex } ?? [:]
            return (shown["members"] as? [[String: Any]] ?? []).filter { $0["state"] as? String != "asking" }.count == 5
        }
        let members = shown["members"] as? [[String: Any]] ?? []
        func shownAs(_ key: String) -> [String: String] {
            Dictionary(members.compactMap { member in (member["deviceId"] as? String).map { ($0, member[key] as? String ?? "") } }) { a, _ in a }
        }
        let expectedFrom = sourceOf.merging([holder.deviceId: "origin"]) { a, _ in a }
        #expect(shownAs("from") == expectedFrom, "the status page shows \(shownAs("from")), the matches said \(sourceOf)")
        #expect(shownAs("state") == expectedFrom.mapValues { $0 == "origin" ? "completed" : "receiving" }, "\(members)")
        let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! NSNumber
        #expect((shown["bytesFromOrigin"] as? NSNumber)?.doubleValue == size.doubleValue, "\(shown)")

        let (victim, follower) = try run.middle()
        let victimId = victim.deviceId
        try run.kill(victim, processes: ["agent-\(victim.name)"])
        // The plan follows the path the broker took (`source.taken`): while the follower still
        // gets the rest, the matcher shows it fed by the device ahead of the one killed.
        try stack.events.waitFor("\(follower)'s new path", after: mark) {
            $0.topic == "session.repathed" && $0.data["previousSender"]?.stringValue == victimId
        }
        // Once it holds the content whole it leaves the swarm, and the wait fails.
        try waitUntil("the matcher to show \(follower) fed by \(sourceOf[victimId] ?? "?")", timeout: 5) {
            try fedBy()[follower] == sourceOf[victimId]
        }
        // Each output is copied while its download runs, under a temporary name beside it, so
        // a get ends moments after its last chunk verifies.
        try waitUntil("an output copied while its download runs", timeout: 30) {
            run.temporaryOutputs(without: victim).contains { ((try? FileManager.default.attributesOfItem(atPath: $0.path)[.size]) as? NSNumber)?.intValue ?? 0 > 0 }
        }
        try run.expectEveryOtherCopy(of: file, without: victim)
        #expect(run.temporaryOutputs(without: victim) == [], "temporary outputs left behind")
        let repathed = stack.events.all.dropFirst(mark).filter { $0.topic == "session.repathed" && $0.data["previousSender"]?.stringValue == victimId }
        #expect(repathed.first?.data["sender"]?.stringValue == sourceOf[victimId], "\(follower) goes to the device ahead of \(victimId)")

        // The holder sent the content about once, however many devices got it.
        try waitUntil("the holder's sending links to close") {
            stack.events.all.dropFirst(mark).contains { $0.topic == "link.closed" && $0.data["deviceId"]?.stringValue == holder.deviceId }
        }
        let holderSent = stack.events.all.dropFirst(mark)
            .filter { $0.topic == "link.closed" && $0.data["role"]?.stringValue == "sender" && $0.data["deviceId"]?.stringValue == holder.deviceId }
            .compactMap { $0.data["payloadBytes"]?.numberValue }.reduce(0, +)
        #expect(holderSent <= size.doubleValue * 1.05, "the holder sent \(holderSent) bytes of \(size)")
        try expectFulfilledFromPeers(stack, Set(crowd.filter { $0.name != victim.name }.map(\.deviceId)))
    }

    /// A device that loses its power or its network mid-chain sends no reset: its connections
    /// stay open and go quiet (here its agent is stopped, SIGSTOP). The matcher misses its
    /// announcements after 3 progress intervals, and the device it fed, gaining nothing, takes
    /// its place (`upstream-lost`) long before the broker would miss 5 of its heartbeats (15 s
    /// here). Every other device ends with the same bytes, none from the origin.
    @Test func aDeviceThatGoesQuietMidChainIsRoutedAroundBeforeItsHeartbeatsAreMissed() throws {
        let stack = try Stack(relays: 1, heartbeatMilliseconds: 3000)
        defer { stack.stop() }
        let (_, crowd, file, content) = try Self.release(stack, "quiet.bin")

        let run = try CrowdRun(stack, content, crowd: crowd)
        let (victim, follower) = try run.middle()
        try run.silence(victim) { stack.freeze("agent-\(victim.name)") }
        let repathed = try stack.events.waitFor("\(follower)'s new path", after: run.mark, timeout: 14) {
            $0.topic == "session.repathed" && $0.data["previousSender"]?.stringValue == victim.deviceId
        }
        #expect(repathed.data["reason"]?.stringValue == "upstream-lost", "\(repathed.data)")
        #expect(repathed.data["sender"]?.stringValue == run.sourceOf[victim.deviceId], "\(follower) goes to the device ahead: \(repathed.data)")
        let lost = stack.events.all.dropFirst(run.mark).first { $0.topic == "device.lost" && $0.data["deviceId"]?.stringValue == victim.deviceId }
        #expect(lost?.publisher == "matcher", "the matcher missed it first: \(String(describing: lost))")

        try run.expectEveryOtherCopy(of: file, without: victim)
        stack.kill("agent-\(victim.name)")
        try expectFulfilledFromPeers(stack, Set(crowd.filter { $0.name != victim.name }.map(\.deviceId)))
    }

    /// Devices that opted in to forwarding (a relay on their own host) send through it, over
    /// their own uplinks, instead of across the fleet relay's host; a device that didn't (behind
    /// NAT) still receives and sends through the fleet relay, and nobody's session crosses
    /// another device's relay. The crowd's relays run inside their agents (`--forward-bind`),
    /// reached in-process; the holder's is a process of its own, named both ways and reached over
    /// ipc. A forwarding device killed mid-chain takes its relay with it: the device it fed sees
    /// the connection drop and asks for a new path at once (`relay-disconnected`), seconds before
    /// the broker would miss 5 heartbeats, and gets the rest from the device ahead. What crossed
    /// a sender's own relay is recorded `unverified`: that relay's count is the sender's word.
    @Test func aCrowdOfForwardingDevicesSendsOverTheirOwnUplinks() throws {
        let stack = try Stack(relays: 1, secure: true)
        defer { stack.stop() }
        var forwarderOf: [String: String] = [:]
        var localOf: [String: String] = [:]
        let capped = ["--upload-rate", "1M"]
        func forwardingAgent(_ name: String, relayProcess: Bool = false) throws -> Stack.Agent {
            let id = "dev-fwd-\(name)"
            let data = stack.directory.appendingPathComponent("agent-\(name)")
            try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
            try id.write(to: data.appendingPathComponent("device.id"), atomically: true, encoding: .utf8)
            let mark = stack.events.mark
            let agent: Stack.Agent
            if relayProcess {
                // Its sending links reach that relay on the host, without CURVE.
                let relay = "\(name)-fwd", local = "ipc://\(stack.directory.path)/\(relay).sock"
                localOf[id] = local
                try stack.addRelay(extra: ["--relay-id", relay, "--forwards-for", id, "--local-bind", local])
                agent = try stack.startAgent(name, extra: ["--forwarder", relay, "--forwarder-local", local] + capped)
            } else {
                localOf[id] = "inproc://ferry-forward"
                agent = try stack.startAgent(name, extra: ["--forward-bind", "tcp://127.0.0.1:\(Ports.free())",
                                                           "--forward-join-token-file", stack.path("origin/join-tokens/relay.token")] + capped)
            }
            // Joined, and said for whom it forwards: the event stream tells the operator.
            let joined = try stack.events.waitFor("\(name)'s relay to join, forwarding for \(id)", after: mark) {
                $0.topic == "relay.joined" && $0.data["forwardsFor"]?.stringValue == id
            }
            forwarderOf[id] = joined.data["relayId"]?.stringValue
            return agent
        }
        let holder = try forwardingAgent("h", relayProcess: true)
        let crowd = [try forwardingAgent("a"), try forwardingAgent("b"), try forwardingAgent("c"), try stack.startAgent("n", extra: capped)]
        let file = try stack.randomFile("forwarded.bin", mebibytes: 8)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: holder).ok)
        try waitForHoldings(stack, holder, hold: content)

        let run = try CrowdRun(stack, content, crowd: crowd)
        let (mark, sourceOf, ids) = (run.mark, run.sourceOf, Set(crowd.map(\.deviceId)))
        // A forwarding device that feeds another: its relay goes with it.
        let (victim, follower) = try run.middle { forwarderOf[$0] != nil }
        let victimId = victim.deviceId
        // The device's host goes: its agent, and the relay inside it.
        try run.kill(victim, processes: ["agent-\(victim.name)"])
        let killedAt = Date()
        try stack.events.waitFor("\(follower) to see its relay go", after: mark, timeout: 10) {
            $0.topic == "link.closed" && $0.data["deviceId"]?.stringValue == follower && $0.data["reason"]?.stringValue == "relay-disconnected"
        }
        let noticed = Date().timeIntervalSince(killedAt)
        #expect(noticed < 2.5, "noticed \(noticed) s after the kill; the broker's heartbeats would take 5 s")
        let repathed = try stack.events.waitFor("\(follower)'s new path", after: mark) {
            $0.topic == "session.repathed" && $0.data["previousSender"]?.stringValue == victimId
        }
        #expect(repathed.data["sender"]?.stringValue == sourceOf[victimId], "\(follower) goes to the device ahead of \(victimId)")

        try run.expectEveryOtherCopy(of: file, without: victim)
        print("forwarding crowd: the kill was noticed in \(String(format: "%.2f", noticed)) s")
        let survivors = ids.subtracting([victimId])
        let brokered = stack.events.all.dropFirst(mark).filter { $0.topic == "session.brokered" && ids.contains($0.data["receiver"]?.stringValue ?? "") }
        #expect(brokered.count >= 5)
        for session in brokered {
            let sender = session.data["sender"]?.stringValue ?? "?"
            let relays: [String] = if case .array(let list)? = session.data["relays"] { list.compactMap(\.stringValue) } else { [] }
            if let own = forwarderOf[sender] {
                #expect(relays == [own], "\(sender) sends through its own relay: \(relays)")
                let spawned = stack.events.all.dropFirst(mark).first {
                    $0.topic == "link.spawned" && $0.sessionId == session.sessionId && $0.data["role"]?.stringValue == "sender"
                }
                #expect(spawned?.data["relayEndpoint"]?.stringValue == localOf[sender], "\(sender) attaches on its relay's local endpoint")
            } else {
                #expect(relays.count == 1 && !forwarderOf.values.contains(relays[0]), "\(sender) has no relay of its own: \(relays)")
            }
        }
        try waitUntil("the survivors' fulfilments", timeout: 60) {
            try stack.fulfilments().filter { survivors.contains($0.deviceId.rawValue) }.count == 3
        }
        for fulfilment in try stack.fulfilments() where survivors.contains(fulfilment.deviceId.rawValue) {
            let forwarded = fulfilment.sources.contains { $0.kind == .peer && forwarderOf[$0.device?.rawValue ?? ""] != nil }
            #expect(fulfilment.bytesFromOrigin == 0 && fulfilment.verification == (forwarded ? .unverified : .matched),
                    "\(fulfilment.deviceId): \(fulfilment.verification), sources \(fulfilment.sources)")
        }
    }

    /// A chain runs at its slowest hop. A device with a slow uplink asks first, so the holder
    /// feeds it and it feeds the rest of the crowd: the plan sees the hop behind it lag, moves
    /// the device that fell behind to the tail, sees the next one fall behind the slow device
    /// too, and moves the slow device itself to the tail, where it feeds nobody. Every copy is
    /// the content byte for byte, none of it from the origin.
    @Test func aDeviceWithASlowUplinkIsMovedToTheTail() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let holder = try stack.startAgent("h", extra: ["--upload-rate", "1M"])
        // Idle, the crowd announces once a minute: the plan can judge the hops only because a
        // device's progress announcements start with its download, not at its next idle turn.
        let idle = ["--announce-ms", "60000"]
        let slow = try stack.startAgent("s", extra: ["--upload-rate", "128K"] + idle)
        let crowd = try ["a", "b", "c"].map { try stack.startAgent($0, extra: ["--upload-rate", "1M"] + idle) }
        // The lag rule is a setting; one out of range stops the matcher at start, saying so.
        for (flag, value) in [("--lag-chunks", "0"), ("--lag-percent", "100")] {
            let refused = try stack.run("ferry-matcher", [flag, value])
            #expect(refused.status != 0 && refused.stderr.contains("\(flag) must be"), "\(flag) \(value): \(refused.stderr)")
        }
        let file = try stack.randomFile("slow-uplink.bin", mebibytes: 12)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: holder).ok)
        try waitForHoldings(stack, holder, hold: content)

        let first = try CrowdRun(stack, content, crowd: [slow])
        #expect(first.sourceOf[slow.deviceId] == holder.deviceId)
        let run = try CrowdRun(stack, content, crowd: crowd)
        #expect(run.sourceOf.values.contains(slow.deviceId), "a device of the crowd goes behind the slow one: \(run.sourceOf)")
        let ids = Set(crowd.map(\.deviceId)), mark = first.mark
        func repathed(_ reason: String) -> [FerryEvent] {
            stack.events.all.dropFirst(mark).filter { $0.topic == "session.repathed" && $0.data["reason"]?.stringValue == reason }
        }
        // Its slow uplink is not known at first: the device behind it is taken to be slow.
        let fell = try stack.events.waitFor("a device behind the slow one to go to the tail", after: mark, timeout: 30) {
            $0.topic == "session.repathed" && $0.data["reason"]?.stringValue == "fell-behind"
        }
        #expect(fell.data["previousSender"]?.stringValue == slow.deviceId, "\(fell.data)")
        let moved = try stack.events.waitFor("the slow device to go to the tail", after: mark, timeout: 30) {
            $0.topic == "session.repathed" && $0.data["reason"]?.stringValue == "slow-uplink"
        }
        #expect(moved.requestId == first.found.first?.requestId, "the slow device's own session moves: \(moved)")
        #expect(moved.data["previousSender"]?.stringValue == holder.deviceId)
        #expect(ids.contains(moved.data["sender"]?.stringValue ?? ""), "it gets the rest from the crowd: \(moved.data)")
        // Whoever it fed gets the rest from the holder, ahead of it.
        #expect(repathed("upstream-moved").contains {
            $0.data["previousSender"]?.stringValue == slow.deviceId && $0.data["sender"]?.stringValue == holder.deviceId
        }, "\(repathed("upstream-moved").map(\.data))")

        try run.expectEveryOtherCopy(of: file)
        try first.expectEveryOtherCopy(of: file)
        let movedAt = try #require(stack.events.all.firstIndex { $0 == moved })
        #expect(!stack.events.all.dropFirst(movedAt).contains { $0.topic == "session.brokered" && $0.data["sender"]?.stringValue == slow.deviceId },
                "the slow device feeds nobody once it is at the tail")
        try expectFulfilledFromPeers(stack, ids.union([slow.deviceId]))
    }
}

@Suite struct Stripes {
    /// Publishes `file` and has each holder get it in turn: the first from the origin, the
    /// second from the first (one source), the third a stripe from each of those two.
    static func spread(_ file: URL, over holders: [Stack.Agent], _ stack: Stack) throws -> (ContentID, [DeviceID]) {
        let size = (try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! NSNumber).uint64Value
        let content = try stack.publish(file)
        let ids = try holders.map { try DeviceID($0.deviceId) }
        for (index, holder) in holders.enumerated() {
            let got = try stack.get(content, via: holder)
            let peers = got.sources.filter { $0.kind == .peer }
            switch index {
            case 0: #expect(got.ok && peers.isEmpty, "\(got.sources)")
            case 1: #expect(got.ok && peers.map(\.device) == [ids[0]], "one holder, one source: \(got.sources)")
            default:
                #expect(got.ok && Set(peers.compactMap(\.device)) == Set(ids.prefix(index)), "a stripe from each: \(got.sources)")
                #expect(peers.allSatisfy { $0.bytes <= size / UInt64(index) + 262_144 }, "\(got.sources)")
            }
            try waitForHoldings(stack, holder, hold: content)
            // Announcements every 500 ms: a few, so the matcher sees every upload free again.
            Thread.sleep(forTimeInterval: 1.5)
        }
        return (content, ids)
    }

    /// Holders of the whole content with uploads to spare each send a stripe of one request at
    /// once, every upload capped so the transfer is still running when the test acts: with two
    /// holders a device gets half from each, with three a third. A holder killed mid-transfer
    /// loses only its stripe, which gets a new path from another holder while the other stripes
    /// go on; every copy is byte-identical, none from the origin, and each holder's bytes are
    /// credited to it.
    @Test func spareHoldersEachSendAStripeAndAStripeWhoseSenderDiesGetsANewPath() throws {
        let stack = try Stack(relays: 1, heartbeatMilliseconds: 200)
        defer { stack.stop() }
        let holders = try ["h1", "h2", "h3"].map { try stack.startAgent($0, extra: ["--upload-rate", "1M"]) }
        let receiver = try stack.startAgent("r")
        let file = try stack.randomFile("striped.bin", mebibytes: 8)
        let size = (try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! NSNumber).uint64Value
        let (content, ids) = try Self.spread(file, over: holders, stack)

        let run = try CrowdRun(stack, content, crowd: [receiver])
        let found = try #require(run.found.first)
        #expect(found.data["stripes"].map { "\($0)" }.map { text in holders.allSatisfy { text.contains($0.deviceId) } } == true, "\(found.data)")
        let brokered = try stack.events.waitFor("the third stripe's session", after: run.mark) {
            $0.topic == "session.brokered" && $0.requestId == found.requestId && $0.data["stripe"]?["index"] == 2
        }
        #expect(brokered.data["stripe"]?["count"] == 3)
        // Kill a holder whose stripe is under way; the others keep sending theirs.
        let victim = try #require(holders.first { $0.deviceId == brokered.data["sender"]?.stringValue })
        try stack.events.waitFor("the receiver to have some of it", after: run.mark) {
            $0.topic == "transfer.progress" && $0.data["deviceId"]?.stringValue == receiver.deviceId
        }
        stack.kill("agent-\(victim.name)")
        let repathed = try stack.events.waitFor("the killed holder's stripe to get a new path", after: run.mark, timeout: 30) {
            $0.topic == "session.repathed" && $0.data["previousSender"]?.stringValue == victim.deviceId
        }
        #expect(repathed.data["reason"] == "sender-lost" && repathed.requestId == found.requestId)
        let anew = try stack.events.waitFor("the stripe's new session", after: run.mark) {
            $0.topic == "session.brokered" && $0.requestId == found.requestId && $0.data["sender"] == repathed.data["sender"]
                && $0.data["stripe"]?["index"] == 2
        }
        #expect(anew.data["sender"]?.stringValue != victim.deviceId)
        // Only the dead holder's stripe moves for it; its new sender, busy with a stripe of its
        // own, may hand it on to a holder that is done (`slower-stripe`).
        let restarted = stack.events.all.dropFirst(run.mark).filter { $0.topic == "session.repathed" && $0.requestId == found.requestId }
        #expect(restarted.filter { $0.data["reason"] == "sender-lost" }.count == 1, "\(restarted.map(\.data))")
        #expect(restarted.allSatisfy { $0.data["reason"] == "sender-lost" || $0.data["reason"] == "slower-stripe" }, "\(restarted.map(\.data))")
        try run.expectEveryOtherCopy(of: file)

        try waitUntil("the receiver's fulfilment", timeout: 60) { try stack.fulfilments().contains { $0.deviceId.rawValue == receiver.deviceId } }
        let fulfilment = try #require(try stack.fulfilments().first { $0.deviceId.rawValue == receiver.deviceId })
        #expect(fulfilment.bytesFromOrigin == 0 && fulfilment.bytesFromPeers == size && fulfilment.verification == .matched, "\(fulfilment)")
        #expect(Set(fulfilment.sources.compactMap(\.device)) == Set(ids), "every holder sent some: \(fulfilment.sources)")
    }

    /// One of three holders has a thirty-second of the others' uplink (after the 1 MiB burst
    /// every cap allows). Its stripe is far behind when the first of the others is done, so the
    /// receiver gives it up (`slower-stripe`) and a holder that is done sends the rest: the
    /// download does not wait on the slow uplink.
    @Test func aSlowHoldersStripeIsTakenOverByOneThatIsDone() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let holders = try [("h1", "1M"), ("h2", "1M"), ("h3", "32K")].map { try stack.startAgent($0.0, extra: ["--upload-rate", $0.1]) }
        let receiver = try stack.startAgent("r")
        let file = try stack.randomFile("slow-stripe.bin", mebibytes: 12)
        let (content, ids) = try Self.spread(file, over: holders, stack)

        let run = try CrowdRun(stack, content, crowd: [receiver])
        let requestId = try #require(run.found.first?.requestId)
        let replaced = try stack.events.waitFor("the slow holder's stripe to get a new sender", after: run.mark, timeout: 30) {
            $0.topic == "session.repathed" && $0.requestId == requestId
        }
        #expect(replaced.data["reason"] == "slower-stripe" && replaced.data["previousSender"]?.stringValue == holders[2].deviceId, "\(replaced.data)")
        #expect(ids.prefix(2).map(\.rawValue).contains(replaced.data["sender"]?.stringValue ?? ""), "\(replaced.data)")
        try run.expectEveryOtherCopy(of: file)
        let replacedCount = stack.events.all.dropFirst(run.mark).filter { $0.topic == "session.repathed" && $0.requestId == requestId }.count
        #expect(replacedCount == 1, "once")
        try waitUntil("the receiver's fulfilment", timeout: 60) { try stack.fulfilments().contains { $0.deviceId.rawValue == receiver.deviceId } }
        let fulfilment = try #require(try stack.fulfilments().first { $0.deviceId.rawValue == receiver.deviceId })
        #expect(fulfilment.bytesFromOrigin == 0 && fulfilment.verification == .matched, "\(fulfilment)")
        // The slow holder sent well under its third.
        let slowBytes = fulfilment.sources.filter { $0.device == ids[2] }.reduce(0) { $0 + $1.bytes }
        #expect(slowBytes < fulfilment.size / 6, "the slow holder sent \(slowBytes) of \(fulfilment.size)")
    }

    /// Both holders' copies rot in the first chunk of the second stripe. Whoever sends that
    /// stripe is caught and banned, then the other is; with no holder left the broker sends the
    /// stripe to the origin, and the receiver fetches it by range at once, while the first
    /// stripe's session (from a holder banned meanwhile, whose good chunks still verify) is
    /// still running. The copy is byte-identical; the origin sent under a stripe's worth.
    @Test func aStripeNoHolderCanSendComesFromTheOriginWhileTheOtherStripeRuns() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let holders = try ["h1", "h2"].map { try stack.startAgent($0, extra: ["--upload-rate", "1M"]) }
        let receiver = try stack.startAgent("r")
        let file = try stack.randomFile("rotten-stripe.bin", mebibytes: 12)
        let (content, ids) = try Self.spread(file, over: holders, stack)
        let manifest = try JSONCoding.decoder.decode(Manifest.self, from: stack.http("GET", "/v1/content/\(content.hex)/manifest").body)
        let second = Stripe(1, of: 2)
        let rotten = try #require(second.chunks(of: manifest.chunkHashes.count).first)
        for holder in holders {
            let stored = try FileHandle(forUpdating: holder.dataDirectory.appendingPathComponent("store/\(content.hex)/data"))
            let offset = UInt64(rotten) * UInt64(manifest.chunkSize) + 4097
            try stored.seek(toOffset: offset)
            let byte = try stored.read(upToCount: 1)?.first ?? 0
            try stored.seek(toOffset: offset)
            try stored.write(contentsOf: [byte ^ 0xFF])
            try stored.close()
        }

        let run = try CrowdRun(stack, content, crowd: [receiver])
        let requestId = try #require(run.found.first?.requestId)
        let first = try stack.events.waitFor("the first stripe's session", after: run.mark) {
            $0.topic == "session.brokered" && $0.requestId == requestId && $0.data["stripe"]?["index"] == 0
        }
        let directed = try stack.events.waitFor("the second stripe sent to the origin", after: run.mark, timeout: 30) {
            $0.topic == "session.origin" && $0.requestId == requestId
        }
        #expect(directed.data["stripe"]?["index"] == 1 && directed.data["reason"]?.stringValue?.contains("no other holder") == true, "\(directed.data)")
        let banned = stack.events.all.dropFirst(run.mark).filter { $0.topic == "device.banned" && $0.data["contentId"]?.stringValue == content.hex }
        #expect(Set(banned.compactMap { $0.data["deviceId"]?.stringValue }) == Set(ids.map(\.rawValue)), "both rotten copies caught")
        let fromOrigin = try stack.events.waitFor("the receiver to fetch the stripe from the origin", after: run.mark) {
            $0.topic == "transfer.started" && $0.requestId == requestId && $0.data["source"] == "origin"
        }
        #expect(fromOrigin.data["stripe"]?["index"] == 1 && fromOrigin.data["wantChunks"]?.numberValue ?? 99 <= Double(manifest.chunkHashes.count / 2),
                "\(fromOrigin.data)")
        // Beside the first stripe: its session is still running when the origin's fetch starts.
        let firstDone = try stack.events.waitFor("the first stripe's session to end", after: run.mark) {
            $0.topic == "link.closed" && $0.sessionId == first.sessionId && $0.data["role"] == "receiver"
        }
        #expect(firstDone.data["reason"] == "done")
        let order = stack.events.all.dropFirst(run.mark)
        #expect(order.firstIndex { $0 == fromOrigin } ?? .max < order.firstIndex { $0 == firstDone } ?? .min, "the origin's fetch began while the first stripe ran")
        try run.expectEveryOtherCopy(of: file)
        try waitUntil("the receiver's fulfilment", timeout: 60) { try stack.fulfilments().contains { $0.deviceId.rawValue == receiver.deviceId } }
        let fulfilment = try #require(try stack.fulfilments().first { $0.deviceId.rawValue == receiver.deviceId })
        let stripeBytes = UInt64(second.chunks(of: manifest.chunkHashes.count).count) * UInt64(manifest.chunkSize)
        #expect(fulfilment.bytesFromOrigin > 0 && fulfilment.bytesFromOrigin <= stripeBytes, "\(fulfilment)")
        #expect(fulfilment.bytesFromPeers + fulfilment.bytesFromOrigin == fulfilment.size, "\(fulfilment)")
    }
}

/// A crowd asking at once: every device's `ferry get` started in the background, and, once
/// each has its match, whom the matcher chose to feed each (`sourceOf`, device id to device id).
private struct CrowdRun {
    let stack: Stack
    let crowd: [Stack.Agent]
    let mark: Int
    let getters: [String: (process: Process, output: URL)]
    let found: [FerryEvent]
    let sourceOf: [String: String]

    init(_ stack: Stack, _ content: ContentID, crowd: [Stack.Agent]) throws {
        self.stack = stack
        self.crowd = crowd
        // A device the matcher has not heard from yet is no source for the others: each has
        // announced once before the crowd asks, or the holder would feed two devices.
        for device in crowd {
            try stack.events.waitFor("\(device.name)'s first announcement") {
                $0.topic == "holdings.updated" && $0.data["deviceId"]?.stringValue == device.deviceId
            }
        }
        let mark = stack.events.mark
        self.mark = mark
        var getters: [String: (process: Process, output: URL)] = [:]
        for device in crowd {
            let output = stack.directory.appendingPathComponent("\(device.name)-\(content.short).bin")
            getters[device.name] = (try startGet(stack, content, via: device, output: output), output)
        }
        self.getters = getters
        let ids = Set(crowd.map(\.deviceId))
        func matches() -> [FerryEvent] {
            stack.events.all.dropFirst(mark).filter { $0.topic == "match.found" && ids.contains($0.data["deviceId"]?.stringValue ?? "") }
        }
        try waitUntil("the crowd's \(crowd.count) matches") { matches().count == crowd.count }
        found = matches()
        sourceOf = Dictionary(found.map { ($0.data["deviceId"]!.stringValue!, $0.data["source"]!.stringValue!) }) { first, _ in first }
    }

    /// A device `eligible` that gets the content from another crowd device and feeds a third,
    /// and the device it feeds.
    func middle(_ eligible: (String) -> Bool = { _ in true }) throws -> (victim: Stack.Agent, follower: String) {
        let ids = Set(crowd.map(\.deviceId))
        let victimId = try #require(sourceOf.first { eligible($0.key) && ids.contains($0.value) && sourceOf.values.contains($0.key) }?.key,
                                    "no device in the middle of \(sourceOf)")
        return (try #require(crowd.first { $0.deviceId == victimId }), try #require(sourceOf.first { $0.value == victimId }?.key))
    }

    /// Once `victim` has some of the content, SIGKILLs `processes` (its agent, perhaps its
    /// relay) and stops its `ferry get`, which would wait out its timeout for an agent that is gone.
    func kill(_ victim: Stack.Agent, processes: [String]) throws {
        try silence(victim) { for process in processes { stack.kill(process) } }
    }

    /// Once `victim` has some of the content, does `how` to it and stops its `ferry get`.
    func silence(_ victim: Stack.Agent, by how: () -> Void) throws {
        try stack.events.waitFor("\(victim.name) to have received some of it", after: mark) {
            $0.topic == "transfer.progress" && $0.data["deviceId"]?.stringValue == victim.deviceId
        }
        how()
        getters[victim.name]!.process.terminate()
    }

    /// The temporary files the outputs of every device but `victim` are copied into.
    func temporaryOutputs(without victim: Stack.Agent) -> [URL] {
        let names = crowd.filter { $0.name != victim.name }.map { ".\(getters[$0.name]!.output.lastPathComponent)." }
        let listed = (try? FileManager.default.contentsOfDirectory(at: stack.directory, includingPropertiesForKeys: nil)) ?? []
        return listed.filter { url in url.lastPathComponent.hasSuffix(".partial") && names.contains { url.lastPathComponent.hasPrefix($0) } }
    }

    /// Every device but `victim` ends its get with a copy of `file`, byte for byte.
    func expectEveryOtherCopy(of file: URL, without victim: Stack.Agent? = nil) throws {
        for device in crowd where device.name != victim?.name {
            let (process, output) = getters[device.name]!
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "\(device.name)'s get failed")
            #expect(try Data(contentsOf: output) == Data(contentsOf: file), "\(device.name)'s copy differs")
        }
    }
}
