import FerryContent
import FerryLink
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import Testing
import ZeroMQ

/// Controls docs/security.md claims and no other test performed, each done on real processes
/// while a session is in flight: a sender past its credit, a sender opening more chunks than a
/// window spans, content withdrawn, a relay past its drain deadline, a tampered session with
/// another relay and holder to turn to, and revocations with transport keys on. Each checks
/// what happens and the counter or event that says so.
///
/// Senders are rate-capped (`--upload-rate`) so a session is still running when the control
/// lands; whatever they don't send comes from another path or the origin, fast.
@Suite(.serialized) struct ControlsInFlight {
    @Test func hostileAndFailingPartiesMidSessionOnAPlainStack() throws {
        let stack = try Stack(relays: 0)
        defer { stack.stop() }
        // The stack's one relay drains for at most 1.5 s: every session goes through it until
        // the drain stops it; only the tampering check, after it, brings relays of its own.
        let relay = try stack.addRelay(extra: ["--drain-ms", "1500"])
        try waitUntil("the relay to register") { try stack.relayCountAtBroker() == 1 }
        // Ties between equally loaded holders go to the lower id: this one is picked first.
        let slowData = stack.directory.appendingPathComponent("agent-slow")
        try FileManager.default.createDirectory(at: slowData, withIntermediateDirectories: true)
        try "dev-0-slow".write(to: slowData.appendingPathComponent("device.id"), atomically: true, encoding: .utf8)
        let slow = try stack.startAgent("slow", extra: ["--upload-rate", "256K"])
        // Holds content without ever being a source, so the senders are the ones each check names.
        let idle = try stack.startAgent("idle", extra: ["--serving", "false"])
        let receiver = try stack.startAgent("r", extra: ["--serving", "false"])

        try Self.aSenderPastItsCreditGetsNoMoreThroughTheRelayThanTheReceiverGranted(stack)
        try Self.aSenderCannotMakeAReceiverHoldMoreChunksOpenThanOneWindowSpans(stack, keyHolder: idle, receiver: receiver)
        try Self.withdrawnContentEndsItsSessionsAndEveryDeviceDropsIt(stack, sender: slow, holder: idle, receiver: receiver)
        try Self.aRelayPastItsDrainDeadlineAbortsWhatIsLeftAndItsReceiversFinishFromTheOrigin(stack, relay: relay, sender: slow,
                                                                                              receiver: receiver)
        try Self.aTamperedSessionGetsANewPathAvoidingBothItsRelayAndItsSender(stack, sender: slow, receiver: receiver)
    }

    @Test func revokedPartiesLoseTheirSessionsAndTheirConnectionsWithTransportKeysOn() throws {
        let stack = try Stack(relays: 2, secure: true)
        defer { stack.stop() }
        // Both holders capped, so whichever the matcher picks is still sending when it, or its
        // relay, is revoked; the receiver never serves, so the holders are the only sources.
        let holders = [try stack.startAgent("h1", extra: ["--upload-rate", "512K"]), try stack.startAgent("h2", extra: ["--upload-rate", "512K"])]
        let receiver = try stack.startAgent("r", extra: ["--serving", "false"])
        // One content for each check, so the receiver starts each download afresh.
        let files = try ["relay-revoked.bin", "device-revoked.bin"].map { try stack.randomFile($0, mebibytes: 3) }
        let contents = try files.map { try stack.publish($0) }
        // Both holders from the origin at once: neither holds it yet, so neither waits on the other's cap.
        for content in contents {
            let gets = try holders.map { try GetInBackground(stack, content, via: $0) }
            for get in gets { #expect(try get.result().ok) }
            for holder in holders { try waitForHoldings(stack, holder, hold: content) }
        }

        try Self.aRevokedRelayCarryingASessionLosesItToAnotherRelayAndIsRefusedFromThenOn(stack, contents[0], files[0], receiver: receiver)
        let remaining = try Self.aRevokedDeviceIsDroppedRepathedAroundNeverOfferedAndRefusedAtOnce(stack, contents[1], files[1], holders: holders,
                                                                                                   receiver: receiver)
        try Self.aRevokedReceiversSessionEndsAtEveryPartyAndTheOriginServesItNothingMore(stack, holder: remaining, receiver: receiver)
    }

    // MARK: a plain stack

    /// docs/security.md, "a sender flooding a relay": credit is clamped at the relay. A sender
    /// with a valid token sends 100 fresh sequence numbers against a grant of 8, then replays
    /// the 8 granted numbers 12 times over; the relay forwards 8 packets, drops the other 188
    /// as `over-credit`, and the receiver sees 8.
    static func aSenderPastItsCreditGetsNoMoreThroughTheRelayThanTheReceiverGranted(_ stack: Stack) throws {
        let broker = try RelayAuthorisation.FakeBroker(stack)
        let relay = broker.relayEndpoint
        let session = try broker.open(block: 5, window: 8)
        let receiver = try broker.party("100.97.5.1"), sender = try broker.party("100.97.5.2")
        defer { receiver.close(); sender.close() }
        try RelayAuthorisation.attach(receiver, session, role: .receiver, token: try broker.token(session, address: "100.97.5.1", role: .receiver))
        try grant(receiver, session, upTo: 8)
        try RelayAuthorisation.attach(sender, session, role: .sender, token: try broker.token(session, address: "100.97.5.2", role: .sender))
        try waitUntil("the sender's credit", timeout: 10) { try packets(sender, seconds: 0.2).contains { $0.header.kind == .credit } }

        for sequence in 0..<100 { try RelayAuthorisation.data(sender, session, sequence: UInt32(sequence), bytes: 1024) }
        for _ in 0..<12 { for sequence in 0..<8 { try RelayAuthorisation.data(sender, session, sequence: UInt32(sequence), bytes: 1024) } }
        func taken() throws -> (forwarded: Double, overCredit: Double) {
            let report = try stack.status(relay)
            return (stack.counter(report, "packetsForwarded"), report.counters["drops"]?["over-credit"]?.numberValue ?? 0)
        }
        try waitUntil("the relay to take all 196 packets", timeout: 15) { let counts = try taken(); return counts.forwarded + counts.overCredit >= 196 }
        let counts = try taken()
        #expect(counts.forwarded == 8, "the relay forwarded \(Int(counts.forwarded)) data packets against a grant of 8")
        #expect(counts.overCredit == 188)
        #expect(stack.counter(try stack.status(relay), "payloadBytesForwarded") == Double(8 * (1024 - ContentSummary.sealOverhead)))
        let metrics = try stack.scrape("relay-under-test")
        #expect(Stack.sample(metrics, #"ferry_relay_drops_total{reason="over-credit"}"#) == counts.overCredit, "\(metrics)")
        try stack.events.waitFor("a link.dropped event for over-credit") {
            $0.topic == "link.dropped" && $0.publisher == "relay:\(broker.relayId!)" && $0.data["reason"]?.stringValue == "over-credit"
        }

        // One more packet of credit, and a marker: once the marker reaches the receiver, whatever
        // the relay forwarded before it has too.
        try grant(receiver, session, upTo: 9)
        try waitUntil("the new credit at the sender", timeout: 10) {
            try packets(sender, seconds: 0.2).contains { $0.header.kind == .credit && $0.header.sequence == 9 }
        }
        try RelayAuthorisation.data(sender, session, sequence: 8, bytes: 2048)
        let arrived = try packets(receiver, seconds: 10) { $0.contains { $0.header.kind == .data && $0.payload.count == 2048 } }
            .filter { $0.header.kind == .data }
        #expect(arrived.last?.payload.count == 2048, "the marker never reached the receiver")
        let beforeMarker = arrived.dropLast()
        #expect(beforeMarker.count == 8, "the receiver got \(beforeMarker.count) data packets against a grant of 8")
        #expect(beforeMarker.map(\.header.sequence) == Array(0..<8))
        print("over credit: 196 packets against a grant of 8; the relay forwarded \(Int(counts.forwarded)), dropped \(Int(counts.overCredit)) as over-credit; the receiver saw \(beforeMarker.count)")
    }

    /// docs/security.md, "a sender making a receiver buffer a whole content": a sender holding
    /// the content key, picked by the broker as any holder is, seals the first packet of 20
    /// chunks, all within its credit. The receiver keeps the chunks one window spans (32
    /// packets of 4-packet chunks, plus 2: 10) half-assembled, refuses the other 10 (counted
    /// `link.dropped`), and once the sender gives up, finishes from the origin.
    static func aSenderCannotMakeAReceiverHoldMoreChunksOpenThanOneWindowSpans(_ stack: Stack, keyHolder: Stack.Agent, receiver: Stack.Agent) throws {
        let file = try stack.randomFile("buffered.bin", mebibytes: 6)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: keyHolder).ok)
        // The attacker is an entitled device: the key holder's copy of the content key stands
        // in for the one the origin would wrap for it.
        let store = try ContentStore(root: keyHolder.dataDirectory.appendingPathComponent("store"))
        let manifest = try #require(store.manifest(content))
        let key = try #require(store.contentKey(content)).packetKey(for: manifest.summary)
        let bytes = try Data(contentsOf: file)

        let attacker = try FakeSender(stack, id: "dev-fake-sender", holding: content)
        defer { attacker.close() }
        let mark = stack.events.mark
        let get = try GetInBackground(stack, content, via: receiver)
        let open = try attacker.awaitSession()
        #expect(open.peerDevice.rawValue == receiver.deviceId)
        let credit = try attacker.attach(open)

        let summary = manifest.summary
        let mayOpen = open.window / summary.packetsPerFullChunk + 2
        let opened = mayOpen + 10
        try #require(opened <= Int(credit), "the attack must stay within credit, so the relay forwards all of it")
        let dropped = { stack.counter(try stack.status(receiver.control), "link.dropped") }
        let droppedBefore = try dropped()
        for chunk in 0..<opened {
            let offset = Int(summary.chunkOffset(chunk)), length = summary.packetLength(chunk: chunk, index: 0)
            let sealed = try key.seal(bytes.subdata(in: offset..<offset + length), chunk: UInt32(chunk), index: 0)
            _ = try attacker.link!.send(messages: LinkFrame.messages(PacketHeader(kind: .data, sessionId: open.sessionId, sequence: UInt32(chunk),
                                                                                  chunk: UInt32(chunk), index: 0), payload: sealed))
        }
        try waitUntil("the receiver to refuse the packets opening chunks past the window", timeout: 15) {
            try dropped() - droppedBefore >= Double(opened - mayOpen)
        }
        _ = try attacker.link!.send(messages: LinkFrame.messages(PacketHeader(kind: .abort, sessionId: open.sessionId), payload: Data("attack-over".utf8)))
        let result = try get.result()
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: get.output) == bytes)
        let refused = try dropped() - droppedBefore
        #expect(refused == Double(opened - mayOpen), "the receiver refused \(refused) packets; \(opened - mayOpen) opened chunks past the window")
        let requestId = try #require(result.requestId).rawValue
        let closed = try stack.events.waitFor("the receiver to end the session", after: mark) {
            $0.topic == "link.closed" && $0.requestId == requestId && $0.data["role"]?.stringValue == "receiver"
        }
        #expect(closed.data["reason"]?.stringValue == "attack-over" && closed.data["verifiedBytes"]?.numberValue == 0)
        let completed = try stack.events.waitFor(topic: "transfer.completed", requestId: requestId)
        #expect(completed.data["bytesFromOrigin"]?.numberValue == Double(bytes.count) && completed.data["bytesFromPeers"]?.numberValue == 0)
        let metrics = try stack.scrape("agent-r")
        let counted = try dropped()
        #expect(Stack.sample(metrics, #"ferry_agent_events_total{event="link.dropped"}"#) == counted)
        print("open chunks: the sender opened \(opened) chunks within a credit of \(credit); the receiver kept \(mayOpen) and refused \(opened - mayOpen) packets")
    }

    /// docs/operations.md (fleet controls) and protocol.md (`content.withdrawn`): withdrawing
    /// content with a session in flight. The origin stops serving it; the broker cancels the
    /// session at sender, relay and receiver; every device deletes its copy and stops
    /// announcing it; intake refuses later requests; the matcher ignores it in later
    /// announcements and offers nobody; the broker opens no session for it.
    static func withdrawnContentEndsItsSessionsAndEveryDeviceDropsIt(_ stack: Stack, sender: Stack.Agent, holder: Stack.Agent, receiver: Stack.Agent) throws {
        let file = try stack.randomFile("withdrawn.bin", mebibytes: 4)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: holder).ok)
        // From the origin too: the only holder doesn't serve.
        #expect(try stack.get(content, via: sender).ok)
        try waitForHoldings(stack, sender, hold: content)
        let summary = try #require(try ContentStore(root: sender.dataDirectory.appendingPathComponent("store")).manifest(content)).summary

        let mark = stack.events.mark
        let (get, brokered, requestId) = try Self.sessionUnderway(stack, content, receiver: receiver, after: mark)
        #expect(brokered.data["sender"]?.stringValue == sender.deviceId)

        let withdrawal = try stack.ferry(["withdraw", content.hex, "--origin", stack.originURL])
        #expect(withdrawal.status == 0 && withdrawal.stdout.contains("withdrew") && !withdrawal.stdout.contains("could not be told"), "\(withdrawal.stdout) \(withdrawal.stderr)")
        let told = try stack.events.waitFor("the origin's content.withdrawn", after: mark) {
            $0.topic == "content.withdrawn" && $0.publisher == "origin" && $0.data["contentId"]?.stringValue == content.hex
        }
        #expect(told.data["ferryTold"] == .bool(true))
        // The origin serves no more of it, to anyone.
        #expect(try stack.http("GET", "/v1/content/\(content.hex)/manifest").status == 404)
        #expect(try stack.http("GET", "/v1/content/\(content.hex)/data", headers: ["Authorization": "Bearer \(stack.operatorToken)", "Range": "bytes=0-65535"]).status == 404)

        // The running session is cancelled at each of its parties.
        let senderClosed = try stack.events.waitFor("the sender to stop", after: mark) {
            $0.topic == "link.closed" && $0.requestId == requestId && $0.data["role"]?.stringValue == "sender"
        }
        #expect(senderClosed.data["reason"]?.stringValue == "withdrawn")
        let relayClosed = try stack.events.waitFor("the relay to close the link", after: mark) {
            $0.topic == "link.closed" && $0.requestId == requestId && $0.data["role"]?.stringValue == "relay"
        }
        // The broker's cancel, or the receiver's abort (sent on the broker's cancel) if it got there first.
        #expect(["cancelled: withdrawn", "aborted"].contains(relayClosed.data["reason"]?.stringValue ?? ""), "\(relayClosed.data)")
        let result = try get.result()
        #expect(!result.ok, "a withdrawn download completed")
        let failed = try stack.events.waitFor(topic: "transfer.failed", requestId: requestId)
        #expect(failed.data["reason"]?.stringValue?.hasPrefix("withdrawn") == true, "\(failed.data)")
        #expect(!FileManager.default.fileExists(atPath: get.output.path))

        // Every device that had any of it deletes it, its content key with it, and stops announcing it.
        for agent in [sender, holder, receiver] {
            let evicted = try stack.events.waitFor("\(agent.name) to drop it", after: mark) {
                $0.topic == "content.evicted" && $0.data["deviceId"]?.stringValue == agent.deviceId && $0.data["contentId"]?.stringValue == content.hex
            }
            #expect(evicted.data["reason"]?.stringValue == "withdrawn")
            #expect(!FileManager.default.fileExists(atPath: agent.dataDirectory.appendingPathComponent("store/\(content.hex)").path))
            #expect(!"\(try stack.status(agent.control).counters["holdings"] ?? .null)".contains(content.hex))
        }
        #expect(stack.counter(try stack.status(stack.brokerControl), "content.withdrawn") == 1)

        // Intake refuses a later request for it, whoever sends it.
        let late = DownloadRequest(requestId: try RequestID("req-after-withdrawal"), deviceId: try DeviceID(receiver.deviceId), content: summary,
                                   server: stack.originURL)
        try stack.pushToIntake(try late.frames())
        let rejected = try stack.events.waitFor(topic: "request.rejected", requestId: "req-after-withdrawal")
        #expect(rejected.data["reason"]?.stringValue == "withdrawn")
        #expect(Stack.sample(try stack.scrape("intake"), #"ferry_intake_requests_total{outcome="rejected",reason="withdrawn"}"#) == 1)

        // A device still announcing it is no holder of it, so a request that reached the matcher
        // anyway finds nobody, and the broker opens no session for it.
        let liar = try stack.context.socket(.pub)
        defer { liar.close() }
        try liar.connect(stack.holdings)
        var sequence: UInt64 = 0
        var heard: FerryEvent?
        try waitUntil("the matcher to hear the late announcement", timeout: 15) {
            sequence += 1
            let announcement = HoldingsAnnouncement(deviceId: try DeviceID("dev-late-holder"), sequence: sequence, contents: [content], serving: true,
                                                    activeUploads: 0, zone: nil, intervalMilliseconds: 500)
            try liar.send([Data(HoldingsAnnouncement.topic.utf8)] + announcement.frames(), dontWait: true)
            heard = stack.events.all.dropFirst(mark).first { $0.topic == "holdings.updated" && $0.data["deviceId"]?.stringValue == "dev-late-holder" }
            return heard != nil
        }
        // The event repeats what the device announced; the index it matches from leaves the content out.
        _ = try #require(heard)
        let matcher = try stack.context.socket(.push)
        defer { matcher.close(lingerMilliseconds: 2000) }
        try matcher.connect(stack.matcher)
        let probe = DownloadRequest(requestId: try RequestID("req-probe-withdrawn"), deviceId: try DeviceID(receiver.deviceId), content: summary,
                                    server: stack.originURL)
        try matcher.send(try MatchRequest(request: probe, traceId: "probe", attempt: 1).frames())
        let decided = try stack.events.waitFor("the matcher's decision") {
            ($0.topic == "match.found" || $0.topic == "match.none") && $0.requestId == "req-probe-withdrawn"
        }
        #expect(decided.topic == "match.none", "the matcher offered \(decided.data["candidates"] ?? .null) for withdrawn content")
        let refused = try stack.events.waitFor(topic: "session.failed", requestId: "req-probe-withdrawn")
        #expect(refused.data["reason"]?.stringValue == "withdrawn")
        #expect(stack.events.matching("session.brokered", requestId: "req-probe-withdrawn").isEmpty)
        print("withdrawal: session cancelled at sender, relay (\(relayClosed.data["reason"]?.stringValue ?? "?")) and receiver (\(failed.data["reason"]?.stringValue ?? "?")); 3 devices dropped it; intake, matcher and broker refused later requests")
    }

    /// docs/operations.md (drain a relay), protocol.md (`relay.draining`): a relay carrying a
    /// session that would take 12 s more is stopped with a 1.5 s drain deadline. The broker
    /// hears it draining; at the deadline the relay aborts the session both ways, reports the
    /// link and exits; the receiver keeps what it verified and gets the rest from the origin.
    static func aRelayPastItsDrainDeadlineAbortsWhatIsLeftAndItsReceiversFinishFromTheOrigin(_ stack: Stack, relay: String, sender: Stack.Agent,
                                                                                           receiver: Stack.Agent) throws {
        let file = try stack.randomFile("drained.bin", mebibytes: 4)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: sender).ok)
        try waitForHoldings(stack, sender, hold: content)
        let relayId = try stack.status(relay).id

        let mark = stack.events.mark
        let (get, _, requestId) = try Self.sessionUnderway(stack, content, receiver: receiver, after: mark)
        let stopped = Date()
        stack.signal("relay-1", SIGTERM)
        let draining = try stack.events.waitFor("the relay to drain", after: mark) { $0.topic == "relay.draining" && $0.data["relayId"]?.stringValue == relayId }
        #expect(draining.data["sessions"]?.numberValue == 1 && draining.data["deadlineMilliseconds"]?.numberValue == 1500)
        let aborted = try stack.events.waitFor("the relay to abort the session at its deadline", after: mark) {
            $0.topic == "link.closed" && $0.requestId == requestId && $0.publisher == "relay:\(relayId)"
        }
        #expect(aborted.data["reason"]?.stringValue == "relay-stopping")
        try waitUntil("the relay to exit", timeout: 10) { stack.processes["relay-1"]?.isRunning == false }
        let took = Date().timeIntervalSince(stopped)
        #expect(took >= 1.4, "the relay exited \(took) s after SIGTERM, before its 1.5 s deadline")
        #expect(stack.processes["relay-1"]?.terminationStatus == 0)

        for role in ["sender", "receiver"] {
            let closed = try stack.events.waitFor("the \(role) to hear the abort", after: mark) {
                $0.topic == "link.closed" && $0.requestId == requestId && $0.data["role"]?.stringValue == role
            }
            #expect(closed.data["reason"]?.stringValue == "relay-stopping", "\(role): \(closed.data)")
        }
        let fromOrigin = try stack.events.waitFor("the receiver to turn to the origin", after: mark) {
            $0.topic == "transfer.started" && $0.requestId == requestId && $0.data["source"]?.stringValue == "origin"
        }
        #expect(fromOrigin.data["reason"]?.stringValue == "session-ended: relay-stopping")
        let result = try get.result()
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: get.output) == Data(contentsOf: file))
        let kinds = Set(result.sources.map(\.kind))
        #expect(kinds == [.peer, .origin], "\(result.sources)")
        let ended = try stack.events.waitFor(topic: "session.failed", requestId: requestId)
        #expect(ended.data["reason"]?.stringValue == "relay-stopping", "\(ended.data)")
        print("drain deadline: the relay exited \(String(format: "%.1f", took)) s after SIGTERM; the receiver got \(result.sources.map { "\($0.kind) \($0.bytes)" }.joined(separator: ", "))")
    }

    /// docs/security.md, "a relay altering what it carries": `BlameOnRealProcesses` shows a
    /// tampered packet never written, the failure convicting nobody alone, and, with no other
    /// relay, the receiver finishing from the origin. Here another relay and another holder
    /// exist: the session's new path avoids both the relay and the sender, and the download
    /// completes from it.
    static func aTamperedSessionGetsANewPathAvoidingBothItsRelayAndItsSender(_ stack: Stack, sender: Stack.Agent, receiver: Stack.Agent) throws {
        let honest = "relay-zz-honest"
        try stack.addRelay(extra: ["--relay-id", honest])
        try stack.events.waitFor("relay \(honest) to join") { $0.topic == "relay.joined" && $0.data["relayId"]?.stringValue == honest }
        let other = try stack.startAgent("fast")
        let file = try stack.randomFile("tampered.bin", mebibytes: 2)
        let content = try stack.publish(file)
        // One after the other, so neither is still sending to the other when the receiver asks
        // (asked together, the second would be chained behind the first): `other` from the
        // origin, then `sender` from it, then two announcement intervals for `other` to say it
        // sends nothing, so both holders are equally loaded and the lower id goes first.
        #expect(try stack.get(content, via: other).ok)
        try waitForHoldings(stack, other, hold: content)
        #expect(try stack.get(content, via: sender).ok)
        try waitForHoldings(stack, sender, hold: content)
        try waitUntil("\(other.name) to send nothing") { stack.counter(try stack.status(other.control), "sending") == 0 }
        Thread.sleep(forTimeInterval: 1.1)
        // Joined only now, so no holder's own download (one may come from the other, through a
        // relay) touched it: idle, and lower in id than the honest relay, it is picked first.
        let tampering = try BlameOnRealProcesses.TamperingRelay(stack)
        defer { tampering.close() }
        try stack.events.waitFor("relay \(tampering.id) to join") { $0.topic == "relay.joined" && $0.data["relayId"]?.stringValue == tampering.id }

        let mark = stack.events.mark
        let (get, brokered, requestId) = try Self.sessionUnderway(stack, content, receiver: receiver, after: mark, moving: false)
        try #require(brokered.data["relays"] == .array([.string(tampering.id)]) && brokered.data["sender"]?.stringValue == sender.deviceId,
                     "the first path must be the tampering relay and the first holder: \(brokered.data)")
        let rejected = try stack.events.waitFor(topic: "transfer.chunk_rejected", requestId: requestId)
        #expect(rejected.data["cause"]?.stringValue == "tag" && rejected.data["sender"]?.stringValue == sender.deviceId)
        let unopened = try stack.events.waitFor("the broker to count the failure", after: mark) {
            $0.topic == "session.failed" && $0.requestId == requestId && $0.data["reason"]?.stringValue == "unopened-packets"
        }
        #expect(unopened.data["relayId"]?.stringValue == tampering.id)
        // The session followed, not another stripe's of the same request.
        let repathed = try stack.events.waitFor("the session's new path", after: mark) {
            $0.topic == "session.repathed" && $0.sessionId == brokered.sessionId
        }
        #expect(repathed.data["reason"]?.stringValue == "corrupt-chunks")
        #expect(repathed.data["previousRelayId"]?.stringValue == tampering.id && repathed.data["relayId"]?.stringValue == honest)
        #expect(repathed.data["previousSender"]?.stringValue == sender.deviceId && repathed.data["sender"]?.stringValue == other.deviceId)
        let result = try get.result()
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: get.output) == Data(contentsOf: file))
        // Both holders were idle, so each sent a stripe: the tampered one's went to `other` too,
        // which thus sent every byte (over two sessions).
        #expect(result.sources.allSatisfy { $0.kind == .peer && $0.device?.rawValue == other.deviceId }
                && result.sources.reduce(0) { $0 + $1.bytes } == 2 << 20, "\(result.sources)")
        // One failure is one partner each: neither is convicted (the verdict comes before the new path).
        #expect(stack.events.matching("device.banned").isEmpty)
        #expect(!stack.events.matching("relay.lost").contains { $0.data["relayId"]?.stringValue == tampering.id })
        print("tampered session: new path from \(other.deviceId) through \(honest), avoiding \(tampering.id) and \(sender.deviceId)")
    }

    // MARK: transport keys on

    /// docs/security.md, "a revoked relay carrying sessions": the broker drops the relay
    /// (`relay.lost`, reason `revoked`), gives its session a new path through the other relay,
    /// refuses the relay's new connections at once and its later hellos on the one it has.
    static func aRevokedRelayCarryingASessionLosesItToAnotherRelayAndIsRefusedFromThenOn(_ stack: Stack, _ content: ContentID, _ file: URL,
                                                                                        receiver: Stack.Agent) throws {
        let mark = stack.events.mark
        let (get, brokered, _) = try Self.sessionUnderway(stack, content, receiver: receiver, after: mark)
        guard case .array(let path)? = brokered.data["relays"], let relayId = path.first?.stringValue,
              let sender = brokered.data["sender"]?.stringValue else { throw StackError("session.brokered without a relay or sender: \(brokered.data)") }

        let revoked = try stack.ferry(["devices", "revoke", relayId, "--origin", stack.originURL])
        #expect(revoked.status == 0, "\(revoked.stderr)")
        let lost = try stack.events.waitFor("the broker to drop the relay", after: mark) { $0.topic == "relay.lost" && $0.data["relayId"]?.stringValue == relayId }
        #expect(lost.data["reason"]?.stringValue == "revoked")
        // The session followed, not another stripe's of the same request.
        let repathed = try stack.events.waitFor("the session's new path", after: mark) {
            $0.topic == "session.repathed" && $0.sessionId == brokered.sessionId
        }
        #expect(repathed.data["reason"]?.stringValue == "relay-lost" && repathed.data["previousRelayId"]?.stringValue == relayId)
        #expect(repathed.data["relayId"]?.stringValue != relayId && repathed.data["sender"]?.stringValue == sender)
        let result = try get.result()
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: get.output) == Data(contentsOf: file))
        // Both holders were idle, so each sent a stripe; the one whose relay was revoked kept its sender.
        #expect(result.sources.allSatisfy { $0.kind == .peer } && result.sources.contains { $0.device?.rawValue == sender }, "\(result.sources)")

        // A new connection with the relay's key is refused at the handshake.
        let index = try #require(stack.relays.firstIndex(of: lost.data["endpoint"]?.stringValue ?? ""))
        let keys = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: stack.path("relay-\(index + 1)")), fileName: "relay.keys")
        let again = try stack.context.socket(.dealer)
        defer { again.close() }
        try again.makeCurveClient(try CurveKeyPair(secretKey: Array(keys.agreementSecretKey)), serverKey: try stack.fleetKey(.public, "broker"))
        try again.connect(stack.brokerControl)
        try stack.events.waitFor("the broker to refuse the relay's new connection", after: mark, timeout: 10) {
            $0.topic == "transport.refused" && $0.publisher == "broker" && $0.data["key"]?.stringValue == keys.agreementPublicKey
        }
        // The relay, no longer heartbeated, says hello again on the connection it still has.
        let hello = try stack.events.waitFor("the relay's next hello to be refused", after: mark, timeout: 20) {
            $0.topic == "message.dropped" && $0.publisher == "broker" && $0.data["kind"]?.stringValue == RelayHello.kind
                && $0.data["peer"]?.stringValue == relayId
        }
        #expect(hello.data["reason"]?.stringValue?.contains("revoked") == true, "\(hello.data)")
        #expect(try stack.relayCountAtBroker() == 1)
        print("revoked relay: its session moved to \(repathed.data["relayId"]?.stringValue ?? "?"); its new connection and its hello were refused")
    }

    /// docs/security.md, "a revoked device taking part at all", with a session in flight: the
    /// matcher and the broker drop it, its session gets a new path from the other holder, its
    /// new connections are refused at both at once, the matcher never offers it though it
    /// still announces, and its later hellos are refused.
    /// Returns the holder left unrevoked.
    @discardableResult
    static func aRevokedDeviceIsDroppedRepathedAroundNeverOfferedAndRefusedAtOnce(_ stack: Stack, _ content: ContentID, _ file: URL,
                                                                                 holders: [Stack.Agent], receiver: Stack.Agent) throws -> Stack.Agent {
        let mark = stack.events.mark
        let (get, brokered, requestId) = try Self.sessionUnderway(stack, content, receiver: receiver, after: mark)
        let revokedId = try #require(brokered.data["sender"]?.stringValue)
        let revoked = try #require(holders.first { $0.deviceId == revokedId }), other = try #require(holders.first { $0.deviceId != revokedId })

        let revocation = try stack.ferry(["devices", "revoke", revokedId, "--origin", stack.originURL])
        #expect(revocation.status == 0, "\(revocation.stderr)")
        let atOrigin = try stack.events.waitFor("the origin to revoke it", after: mark) {
            $0.topic == "device.revoked" && $0.data["deviceId"]?.stringValue == revokedId
        }
        #expect(atOrigin.data["ferryTold"] == .bool(true))
        for service in ["matcher", "broker"] {
            let lost = try stack.events.waitFor("the \(service) to drop it", after: mark) {
                $0.topic == "device.lost" && $0.publisher == service && $0.data["deviceId"]?.stringValue == revokedId
            }
            #expect(lost.data["reason"]?.stringValue == "revoked")
        }
        // The session followed, not another stripe's of the same request.
        let repathed = try stack.events.waitFor("the session's new path", after: mark) {
            $0.topic == "session.repathed" && $0.sessionId == brokered.sessionId
        }
        #expect(repathed.data["reason"]?.stringValue == "sender-revoked" && repathed.data["previousSender"]?.stringValue == revokedId)
        #expect(repathed.data["sender"]?.stringValue == other.deviceId)
        let stoppedSending = try stack.events.waitFor("the revoked sender to be told", after: mark) {
            $0.topic == "link.closed" && $0.requestId == requestId && $0.publisher == "agent:\(revokedId)" && $0.data["role"]?.stringValue == "sender"
        }
        #expect(stoppedSending.data["reason"]?.stringValue == "revoked")
        let result = try get.result()
        #expect(result.ok, "\(result.error ?? "")")
        #expect(try Data(contentsOf: get.output) == Data(contentsOf: file))
        #expect(result.sources.contains { $0.kind == .peer && $0.device?.rawValue == other.deviceId }, "\(result.sources)")

        // New connections with its key: refused at the matcher and the broker at once.
        let keys = try DeviceKeys.loadOrCreate(directory: revoked.dataDirectory)
        let pair = try CurveKeyPair(secretKey: Array(keys.agreementSecretKey))
        let control = try stack.context.socket(.dealer), holdings = try stack.context.socket(.pub)
        defer { control.close(); holdings.close() }
        try control.makeCurveClient(pair, serverKey: try stack.fleetKey(.public, "broker"))
        try control.connect(stack.brokerControl)
        try holdings.makeCurveClient(pair, serverKey: try stack.fleetKey(.public, "matcher"))
        try holdings.connect(stack.holdings)
        for service in ["broker", "matcher"] {
            try stack.events.waitFor("the \(service) to refuse its new connection", after: mark, timeout: 10) {
                $0.topic == "transport.refused" && $0.publisher == service && $0.data["key"]?.stringValue == keys.agreementPublicKey
            }
        }

        // The revoked agent still runs and announces the content every 500 ms on the
        // connection it has; a request decided now, seconds after the revocation, is offered
        // the other holder only.
        let pipeline = try stack.context.socket(.push)
        defer { pipeline.close(lingerMilliseconds: 2000) }
        try stack.secureAsOperator(pipeline, server: "matcher")
        try pipeline.connect(stack.matcher)
        let summary = try #require(try ContentStore(root: other.dataDirectory.appendingPathComponent("store")).manifest(content)).summary
        let probe = DownloadRequest(requestId: try RequestID("req-probe-revoked"), deviceId: try DeviceID("dev-probe"), content: summary,
                                    server: stack.originURL)
        try pipeline.send(try MatchRequest(request: probe, traceId: "probe", attempt: 1).frames())
        let decided = try stack.events.waitFor("the matcher's decision") {
            ($0.topic == "match.found" || $0.topic == "match.none") && $0.requestId == "req-probe-revoked"
        }
        #expect(decided.topic == "match.found" && decided.data["candidates"] == .array([.string(other.deviceId)]), "\(decided.topic) \(decided.data)")

        // Unheard by the broker, the agent says hello again on its open connection: refused.
        let hello = try stack.events.waitFor("the revoked device's next hello to be refused", after: mark, timeout: 20) {
            $0.topic == "message.dropped" && $0.publisher == "broker" && $0.data["kind"]?.stringValue == AgentHello.kind
                && $0.data["peer"]?.stringValue == revokedId
        }
        #expect(hello.data["reason"]?.stringValue?.contains("revoked") == true, "\(hello.data)")
        #expect(stack.counter(try stack.status(stack.brokerControl), "devices.revoked") == 2)
        print("revoked device: its session moved to \(other.deviceId); matcher and broker refused its new connections; its hello was refused")
        return other
    }

    /// docs/security.md, "a revoked device taking part at all", the other side: a device
    /// revoked while receiving. The broker ends its session at the sender and the relay (no new
    /// path: it is the receiver that may take no part), and the origin refuses it the rest.
    static func aRevokedReceiversSessionEndsAtEveryPartyAndTheOriginServesItNothingMore(_ stack: Stack, holder: Stack.Agent, receiver: Stack.Agent) throws {
        let file = try stack.randomFile("receiver-revoked.bin", mebibytes: 3)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: holder).ok)
        try waitForHoldings(stack, holder, hold: content)

        let mark = stack.events.mark
        let (get, brokered, requestId) = try Self.sessionUnderway(stack, content, receiver: receiver, after: mark)
        #expect(brokered.data["sender"]?.stringValue == holder.deviceId)

        let revocation = try stack.ferry(["devices", "revoke", receiver.deviceId, "--origin", stack.originURL])
        #expect(revocation.status == 0, "\(revocation.stderr)")
        let lost = try stack.events.waitFor("the broker to drop the receiver", after: mark) {
            $0.topic == "device.lost" && $0.publisher == "broker" && $0.data["deviceId"]?.stringValue == receiver.deviceId
        }
        #expect(lost.data["reason"]?.stringValue == "revoked")
        let ended = try stack.events.waitFor("the broker to end the session", after: mark) {
            $0.topic == "session.failed" && $0.requestId == requestId && $0.data["reason"]?.stringValue == "receiver-revoked"
        }
        #expect(ended.sessionId == brokered.sessionId)
        let senderClosed = try stack.events.waitFor("the sender to stop", after: mark) {
            $0.topic == "link.closed" && $0.requestId == requestId && $0.data["role"]?.stringValue == "sender"
        }
        #expect(senderClosed.data["reason"]?.stringValue == "receiver-revoked", "\(senderClosed.data)")
        let relayClosed = try stack.events.waitFor("the relay to close the link", after: mark) {
            $0.topic == "link.closed" && $0.requestId == requestId && $0.data["role"]?.stringValue == "relay"
        }
        // The broker's cancel, or the receiver's abort (sent on the broker's cancel) if it got there first.
        #expect(["cancelled: receiver-revoked", "aborted"].contains(relayClosed.data["reason"]?.stringValue ?? ""), "\(relayClosed.data)")

        let result = try get.result()
        #expect(!result.ok, "a revoked device finished its download")
        try stack.events.waitFor(topic: "transfer.failed", requestId: requestId)
        let metrics = String(decoding: try stack.http("GET", "/metrics").body, as: UTF8.self)
        #expect((Stack.sample(metrics, #"ferry_origin_refused_total{reason="device-revoked"}"#) ?? 0) >= 1)
        #expect(stack.events.matching("session.repathed", requestId: requestId).isEmpty, "a revoked receiver got a new path")
        #expect(!FileManager.default.fileExists(atPath: get.output.path))
        print("revoked receiver: session ended at sender and relay; the origin refused it the rest (\(result.error ?? "?"))")
    }

    // MARK: helpers

    /// `receiver` asks for `content` in the background: its get, the broker's session for it and
    /// its request id, once the session is brokered (after `mark`) and, when `moving`, once its
    /// first bytes have arrived.
    fileprivate static func sessionUnderway(_ stack: Stack, _ content: ContentID, receiver: Stack.Agent, after mark: Int, moving: Bool = true) throws
        -> (get: GetInBackground, brokered: FerryEvent, requestId: String) {
        let get = try GetInBackground(stack, content, via: receiver)
        let brokered = try stack.events.waitFor("the receiver's session", after: mark) {
            $0.topic == "session.brokered" && $0.data["receiver"]?.stringValue == receiver.deviceId
        }
        let requestId = try #require(brokered.requestId)
        if moving {
            try stack.events.waitFor("the first bytes through the relay", after: mark) {
                $0.topic == "transfer.progress" && $0.requestId == requestId
            }
        }
        return (get, brokered, requestId)
    }

    static func grant(_ receiver: Socket, _ session: SessionID, upTo limit: UInt32) throws {
        _ = try receiver.send(messages: LinkFrame.messages(PacketHeader(kind: .credit, sessionId: session, sequence: limit)))
    }

    /// Every link packet `socket` receives within `seconds`, or until `until` holds.
    static func packets(_ socket: Socket, seconds: Double, until: (([(header: PacketHeader, payload: Data)]) -> Bool)? = nil) throws
        -> [(header: PacketHeader, payload: Data)] {
        try received(on: socket, for: seconds, { frames in
            (header: try PacketHeader(decoding: frames[0].data), payload: frames.count > 1 ? frames[1].data : Data())
        }, until: until ?? { _ in false })
    }
}

/// `ferry get --json` in the background, its output file under the stack's output directory.
private final class GetInBackground {
    let process = Process()
    let output: URL
    private let printed: URL

    init(_ stack: Stack, _ content: ContentID, via agent: Stack.Agent) throws {
        let name = "\(agent.name)-\(content.short)-\(UUID().uuidString.prefix(4))"
        output = stack.directory.appendingPathComponent("\(name).bin")
        printed = stack.directory.appendingPathComponent("\(name).json")
        _ = FileManager.default.createFile(atPath: printed.path, contents: nil)
        process.executableURL = Stack.binaries.appendingPathComponent("ferry")
        process.arguments = ["get", content.hex, "--agent", agent.control, "--json", "--timeout", "120", "--output", output.path]
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
        process.standardOutput = try FileHandle(forWritingTo: printed)
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func result() throws -> GetResult {
        process.waitUntilExit()
        let text = try String(contentsOf: printed, encoding: .utf8)
        guard let line = text.split(separator: "\n").last,
              let result = try? JSONCoding.decoder.decode(GetResult.self, from: Data(line.utf8)) else {
            throw StackError("ferry get printed no result (exit \(process.terminationStatus)): \(text)")
        }
        return result
    }
}

/// A device that says hello to the broker and announces one content, as any agent does without
/// transport keys, so the matcher offers it as a source; it then sends what the test tells it to.
private final class FakeSender {
    let stack: Stack
    let id: DeviceID
    let content: ContentID
    let control: Socket
    let holdings: Socket
    private(set) var link: Socket?
    private var sequence: UInt64 = 0

    init(_ stack: Stack, id: String, holding content: ContentID) throws {
        self.stack = stack
        self.id = try DeviceID(id)
        self.content = content
        control = try stack.context.socket(.dealer)
        try control.setIdentity(id)
        try control.connect(stack.brokerControl)
        holdings = try stack.context.socket(.pub)
        try holdings.connect(stack.holdings)
        try control.send(try AgentHello(deviceId: self.id).frames())
        try stack.events.waitFor("the fake sender to join the broker") { $0.topic == "device.joined" && $0.data["deviceId"]?.stringValue == id }
        try waitUntil("the matcher to list the fake sender as a holder", timeout: 15) {
            try keepUp()
            return stack.events.matching("holdings.updated").contains {
                $0.data["deviceId"]?.stringValue == id && "\($0.data["contents"] ?? .null)".contains(content.hex)
            }
        }
    }

    /// Heartbeats the broker and announces, as an agent does, so neither forgets it.
    func keepUp() throws {
        sequence += 1
        try control.send(try Heartbeat(load: 0).frames(), dontWait: true)
        let announcement = HoldingsAnnouncement(deviceId: id, sequence: sequence, contents: [content], serving: true, activeUploads: 0,
                                                zone: nil, intervalMilliseconds: 500)
        try holdings.send([Data(HoldingsAnnouncement.topic.utf8)] + announcement.frames(), dontWait: true)
    }

    /// The broker's `session.open` naming this device the sender.
    func awaitSession() throws -> SessionOpen {
        var open: SessionOpen?
        try waitUntil("the broker to make the fake sender a session's sender", timeout: 20) {
            try keepUp()
            while let frames = try control.receive(dontWait: true) {
                if frames.count == 3, frames[1].string == SessionOpen.kind {
                    open = try SessionOpen.decode(frames: frames.map(\.data))
                }
            }
            return open != nil
        }
        return open!
    }

    /// Attaches to the session's relay with the broker's token; returns the receiver's credit.
    func attach(_ open: SessionOpen) throws -> UInt32 {
        let link = try Socket.linkDealer(context: stack.context, address: open.address, window: open.window)
        try link.connect(open.relayEndpoint)
        self.link = link
        _ = try link.send(messages: LinkFrame.attach(open.sessionId, LinkAttach(role: .sender, want: [], token: open.token)))
        var attached = false, credit: UInt32 = 0
        try waitUntil("the receiver's attach and credit", timeout: 15) {
            try keepUp()
            for packet in try ControlsInFlight.packets(link, seconds: 0.05) {
                if packet.header.kind == .attach { attached = true }
                if packet.header.kind == .credit { credit = max(credit, packet.header.sequence) }
            }
            return attached && credit > 0
        }
        return credit
    }

    func close() {
        link?.close()
        control.close()
        holdings.close()
    }
}
