import FerryProtocol
import Foundation
import Testing
import ZeroMQ

@Suite struct HostileVolume {
    /// Hundreds of malformed, truncated, oversized and unknown-session messages at every
    /// endpoint a service binds: every process keeps running, each service's own count of what
    /// it refused rises by what it was sent, and a download through the stack still works.
    @Test func garbageAtEveryEndpointIsCountedAndTheStackKeepsServing() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let file = try stack.randomFile("content.bin", mebibytes: 8)
        let content = try stack.publish(file)
        let started = Date()
        var summary: [String] = []

        // First: the reporter parks well-formed completions for ten seconds before refusing
        // them, and that wait overlaps the rest.
        let reporter = try HostileRun.reporter(stack)
        summary.append(try HostileRun.intake(stack))
        summary.append(try HostileRun.matcher(stack))
        summary += try HostileRun.broker(stack)
        summary.append(try HostileRun.agent(stack, a))
        summary.append(try HostileRun.relay(stack))
        summary.append(try HostileRun.eventBus(stack))
        summary.append(try HostileRun.origin(stack))
        summary.append(try reporter.finish())

        for (name, process) in stack.processes.sorted(by: { $0.key < $1.key }) {
            #expect(process.isRunning, "\(name) is not running after the hostile volume (exit \(process.isRunning ? 0 : process.terminationStatus))")
        }

        // A real download afterwards: B from the origin, then A from B through the relay.
        let original = try Data(contentsOf: file)
        let fromOrigin = try stack.get(content, via: b)
        #expect(fromOrigin.ok, "B's download failed: \(fromOrigin.error ?? "")")
        #expect(fromOrigin.sources.map(\.kind) == [.origin])
        try waitForHoldings(stack, b, hold: content)
        let output = stack.directory.appendingPathComponent("a.bin")
        let fromPeer = try stack.get(content, via: a, output: output)
        #expect(fromPeer.ok, "A's download failed: \(fromPeer.error ?? "")")
        #expect(try Data(contentsOf: output) == original)
        #expect(fromPeer.sources.map(\.kind) == [.peer])
        #expect(fromPeer.sources.first?.device?.rawValue == b.deviceId)
        let request = try #require(fromPeer.requestId).rawValue
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: request, timeout: 60)
        let record = try #require(try stack.fulfilments().first { $0.requestId.rawValue == request })
        #expect(record.verification == .matched && record.bytesFromPeers == UInt64(original.count))
        #expect(stack.counter(try stack.status(stack.relays[0]), "payloadBytesForwarded") == Double(original.count))

        for (name, process) in stack.processes.sorted(by: { $0.key < $1.key }) {
            #expect(process.isRunning, "\(name) stopped during the download after the hostile volume")
        }
        for line in summary { print("hostile volume: \(line)") }
        print("hostile volume: garbage, counts and both downloads took \(String(format: "%.1f", Date().timeIntervalSince(started))) s; A got \(original.count) bytes from B through relay-1")
    }
}

/// One hostile message and the `WireError.reason` the protocol gives it, for the services that
/// count by reason.
private struct Garbage {
    var frames: [Data]
    var reason: String

    init(_ frames: [Data], _ reason: String) {
        self.frames = frames
        self.reason = reason
    }

    /// The same message behind a topic frame, as a PUB/SUB socket carries it.
    func withTopic(_ topic: String) -> Garbage { Garbage([Data(topic.utf8)] + frames, reason) }
}

/// What was sent to one endpoint: how many in all and by reason.
private struct Tally {
    var sent = 0
    var byReason: [String: Int] = [:]

    mutating func add(_ garbage: Garbage) {
        sent += 1
        byReason[garbage.reason, default: 0] += 1
    }

    static func + (lhs: Tally, rhs: Tally) -> Tally {
        Tally(sent: lhs.sent + rhs.sent, byReason: lhs.byReason.merging(rhs.byReason, uniquingKeysWith: +))
    }

    var reasons: String { byReason.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }
}

private func bytes(_ text: String) -> Data { Data(text.utf8) }

private enum Hostile {
    static let rounds = 40
    static let version = bytes(Envelope.version)
    /// Found in every message sent to the event bus, so a subscriber can pick them out.
    static let marker = "hostile-volume"
    static let unknownContent = try! ContentID(String(repeating: "0f", count: 32))
    static let nobody = try! DeviceID("dev-hostile-nobody")
    static let unknownSummary = ContentSummary(contentId: unknownContent, size: 10, chunkSize: 262_144, packetSize: 65_536)
    /// Just over the envelope's limit but under the sockets' ZMQ_MAXMSGSIZE (the limit plus
    /// 1 KiB), so it is delivered and the envelope refuses it unread.
    static let oversizedBody = Data(repeating: 0x20, count: Envelope.maxBodyBytes + 1)
    /// Far past every socket's ZMQ_MAXMSGSIZE; larger than loopback's socket buffers too, so
    /// the sender is still writing it when it is cut off and nothing queued behind it goes
    /// down with that connection.
    static let overCapFrame = Data(count: 32 << 20)

    /// The shapes every envelope socket gets; `kind` is one the socket reads, `wrongTypes` a
    /// JSON object of that kind whose fields have the wrong types, `invalid` one that decodes
    /// but fails the message's own checks.
    static func envelopes(kind: String, wrongTypes: String, invalid: Data?) -> [Garbage] {
        var list = [
            notAnEnvelope,
            Garbage([version, bytes(kind)], "malformed"),
            Garbage([version, bytes(kind), bytes("{}"), bytes("trailing")], "malformed"),
            Garbage([Data(), Data(), Data()], "unsupported-version"),
            Garbage([bytes("ferry/2"), bytes(kind), bytes("{}")], "unsupported-version"),
            Garbage([version, bytes("no.such.kind"), bytes("{}")], "unknown-kind"),
            Garbage([version, bytes(kind), bytes(#"{"requestId":"hostile-trunc"#)], "malformed"),
            Garbage([version, bytes(kind), Data((0..<64).map { UInt8(255 - $0) })], "malformed"),
            Garbage([version, bytes(kind), bytes(wrongTypes)], "malformed"),
            Garbage([version, bytes(kind), bytes("[null]")], "malformed"),
        ]
        if let invalid { list.append(Garbage([version, bytes(kind), invalid], "invalid")) }
        return list
    }

    static let notAnEnvelope = Garbage([bytes("GET / HTTP/1.1\r\nHost: ferry\r\n\r\n")], "malformed")

    /// The request pipeline recognises a withdrawal by its kind before anything else; one that
    /// doesn't decode must fall through to the usual refusal, not withdraw anything.
    static let brokenWithdrawal = Garbage([version, bytes(ContentWithdrawn.kind), bytes(#"{"contentId":"not-hex","reason":7}"#)], "unknown-kind")

    static func oversized(_ kind: String) -> Garbage { Garbage([version, bytes(kind), oversizedBody], "too-large") }

    static var badRequest: DownloadRequest {
        DownloadRequest(requestId: try! RequestID("hostile-invalid"), deviceId: nobody, content: unknownSummary, server: "gopher://nowhere")
    }

    /// Sends every shape `rounds` times, interleaved, then `extra` once each.
    static func burst(_ socket: Socket, _ shapes: [Garbage], extra: [Garbage] = [], topic: String? = nil) throws -> Tally {
        var tally = Tally()
        for _ in 0..<rounds {
            for garbage in shapes {
                try socket.send((topic.map { garbage.withTopic($0) } ?? garbage).frames)
                tally.add(garbage)
            }
        }
        for garbage in extra {
            try socket.send((topic.map { garbage.withTopic($0) } ?? garbage).frames)
            tally.add(garbage)
        }
        return tally
    }

    /// Past a socket's ZMQ_MAXMSGSIZE libzmq disconnects the peer before the service sees the
    /// message, so no service can count it. What can be checked is that the service survives,
    /// and that `followUp`, queued behind it on the same connection, arrives once the peer has
    /// reconnected and is counted like any other.
    static func overCap(_ socket: Socket, kind: String, followUp: Garbage, topic: String? = nil) throws -> Tally {
        try socket.send((topic.map { [bytes($0)] } ?? []) + [version, bytes(kind), overCapFrame])
        try socket.send((topic.map { followUp.withTopic($0) } ?? followUp).frames)
        var tally = Tally()
        tally.add(followUp)
        return tally
    }
}

private enum HostileRun {
    static func connect(_ stack: Stack, _ type: SocketType, _ endpoint: String) throws -> Socket {
        let socket = try stack.context.socket(type)
        try socket.connect(endpoint)
        return socket
    }

    /// An XPUB drops what it publishes until a subscription has reached it; this waits for one.
    static func publisher(_ stack: Stack, _ endpoint: String) throws -> Socket {
        let socket = try connect(stack, .xpub, endpoint)
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            var poller = Poller()
            poller.add(socket)
            try poller.poll(timeoutMilliseconds: 100)
            while let message = try socket.receive(dontWait: true) {
                if message.first?.data.first == 1 { return socket }
            }
        }
        throw StackError("no subscription reached the publisher for \(endpoint)")
    }

    /// A ROUTER's service handles one peer's messages in the order they were sent, so its
    /// answer to a status query on the hostile peer's own connection counts everything that
    /// peer sent before it.
    static func statusInOrder(_ socket: Socket, timeout: TimeInterval = 30) throws -> StatusReport {
        try socket.send(try StatusQuery().frames())
        let answers = try received(on: socket, for: timeout, { try? StatusReport.decode(frames: $0.map(\.data)) },
                                   until: { $0.contains { $0 != nil } })
        if let report = answers.compactMap({ $0 }).first { return report }
        throw StackError("no status answer on the hostile connection within \(Int(timeout)) s")
    }

    static func events(_ stack: Stack, _ predicate: (FerryEvent) -> Bool) -> Int { stack.events.all.filter(predicate).count }

    /// Waits until `current()` is exactly `expected`; short of it, a refusal went uncounted.
    static func waitForCount(_ what: String, expected: Double, timeout: TimeInterval = 30, _ current: () throws -> Double) throws {
        do {
            try waitUntil("\(what) to reach \(Int(expected))", timeout: timeout) { try current() == expected }
        } catch {
            throw StackError("\(error) (it is \((try? current()).map { String(Int($0)) } ?? "unreadable"))")
        }
    }

    static func metric(_ stack: Stack, _ process: String, _ series: String) -> Double {
        (try? stack.scrape(process)).flatMap { Stack.sample($0, series) } ?? 0
    }

    // MARK: intake (PULL)

    static func intake(_ stack: Stack) throws -> String {
        let status = stack.status["intake"]!
        let before = try stack.status(status)
        let reasons = ["malformed", "unsupported-version", "unknown-kind", "invalid", "too-large"]
        func series(_ reason: String) -> String { #"ferry_intake_requests_total{outcome="rejected",reason="\#(reason)"}"# }
        let metricsBefore = Dictionary(uniqueKeysWithValues: reasons.map { ($0, metric(stack, "intake", series($0))) })
        let eventsBefore = events(stack) { $0.topic == "request.rejected" && $0.publisher == "intake" }

        let cut = try connect(stack, .push, stack.intake)
        defer { cut.close() }
        var tally = try Hostile.overCap(cut, kind: DownloadRequest.kind, followUp: Hostile.notAnEnvelope)
        let push = try connect(stack, .push, stack.intake)
        defer { push.close() }
        let shapes = Hostile.envelopes(kind: DownloadRequest.kind, wrongTypes: #"{"requestId":7,"deviceId":["x"],"content":"none","server":false}"#,
                                       invalid: try JSONCoding.encoder.encode(Hostile.badRequest)) + [Hostile.brokenWithdrawal]
        tally = try tally + Hostile.burst(push, shapes, extra: [Hostile.oversized(DownloadRequest.kind), Hostile.oversized(DownloadRequest.kind)])

        try waitForCount("intake's rejected count", expected: stack.counter(before, "rejected") + Double(tally.sent)) {
            stack.counter(try stack.status(status), "rejected")
        }
        let after = try stack.status(status)
        #expect(stack.counter(after, "received") - stack.counter(before, "received") == Double(tally.sent))
        #expect(stack.counter(after, "rejected") - stack.counter(before, "rejected") == Double(tally.sent))
        try waitForCount("intake's request.rejected events", expected: Double(eventsBefore + tally.sent)) {
            Double(events(stack) { $0.topic == "request.rejected" && $0.publisher == "intake" })
        }
        for reason in reasons {
            #expect(metric(stack, "intake", series(reason)) - metricsBefore[reason]! == Double(tally.byReason[reason] ?? 0),
                    "intake's \(reason) count")
        }
        return "intake refused \(Int(stack.counter(after, "rejected") - stack.counter(before, "rejected")))/\(tally.sent) (\(tally.reasons)); "
            + "1 over ZMQ_MAXMSGSIZE cut off unread"
    }

    // MARK: matcher (PULL for requests, SUB for holdings)

    static func matcher(_ stack: Stack) throws -> String {
        let status = stack.status["matcher"]!
        let before = stack.counter(try stack.status(status), "dropped")
        let failedBefore = events(stack) { $0.topic == "match.failed" && $0.publisher == "matcher" }

        let cut = try connect(stack, .push, stack.matcher)
        defer { cut.close() }
        var requests = try Hostile.overCap(cut, kind: MatchRequest.kind, followUp: Hostile.notAnEnvelope)
        let push = try connect(stack, .push, stack.matcher)
        defer { push.close() }
        let invalid = MatchRequest(request: Hostile.badRequest, traceId: "hostile", attempt: 1)
        let shapes = Hostile.envelopes(kind: MatchRequest.kind, wrongTypes: #"{"request":1,"traceId":[],"attempt":"one"}"#,
                                       invalid: try JSONCoding.encoder.encode(invalid)) + [Hostile.brokenWithdrawal]
        requests = try requests + Hostile.burst(push, shapes, extra: [Hostile.oversized(MatchRequest.kind)])
        // Counted before the announcements go out: announcement drops are sampled into events
        // when the shared count hits a multiple of 100, which a run of them then surely does.
        try waitForCount("the matcher's dropped count", expected: before + Double(requests.sent)) { stack.counter(try stack.status(status), "dropped") }

        // Agents PUB to the matcher's SUB, which only takes the holdings topic: anything else
        // is filtered out by the subscription before it leaves the sender, so every shape here
        // starts with the topic.
        let topic = HoldingsAnnouncement.topic
        let cutHoldings = try publisher(stack, stack.holdings)
        defer { cutHoldings.close() }
        var holdings = try Hostile.overCap(cutHoldings, kind: HoldingsAnnouncement.kind, followUp: Hostile.notAnEnvelope, topic: topic)
        let pub = try publisher(stack, stack.holdings)
        defer { pub.close() }
        let zeroInterval = HoldingsAnnouncement(deviceId: Hostile.nobody, sequence: 1, contents: [Hostile.unknownContent], serving: true,
                                                activeUploads: 0, zone: nil, intervalMilliseconds: 0)
        let announcements = Hostile.envelopes(kind: HoldingsAnnouncement.kind,
                                              wrongTypes: #"{"deviceId":"dev-hostile","sequence":"next","contents":{},"serving":"yes"}"#,
                                              invalid: try JSONCoding.encoder.encode(zeroInterval))
        // Hole 5 of the trust review: an interval that overflowed `* 3` trapped the matcher, and
        // unbounded uploads won or broke the ranking. Each is refused, and the matcher lives on.
        let unbounded = try [(Int.max, 0), (Int.max / 3 + 1, 0), (1000, -1), (1000, Int.max)].map { interval, uploads in
            Garbage(try HoldingsAnnouncement(deviceId: Hostile.nobody, sequence: 2, contents: [Hostile.unknownContent], serving: true,
                                             activeUploads: uploads, zone: nil, intervalMilliseconds: interval).frames(), "invalid")
        }
        holdings = try holdings + Hostile.burst(pub, announcements, extra: [Hostile.oversized(HoldingsAnnouncement.kind)] + unbounded, topic: topic)
        // The topic alone, and the topic as a prefix of one frame, are still not announcements.
        for frames in [[bytes(topic)], [bytes(topic + "-and-nothing-else")]] {
            try pub.send(frames)
            holdings.add(Garbage(frames, "malformed"))
        }

        let total = requests.sent + holdings.sent
        try waitForCount("the matcher's dropped count", expected: before + Double(total)) { stack.counter(try stack.status(status), "dropped") }
        try waitForCount("the matcher's match.failed events", expected: Double(failedBefore + requests.sent)) {
            Double(events(stack) { $0.topic == "match.failed" && $0.publisher == "matcher" })
        }
        #expect(events(stack) { $0.topic == "message.dropped" && $0.publisher == "matcher" } >= 1)
        #expect(!stack.events.all.contains { $0.topic == "holdings.updated" && $0.data["deviceId"]?.stringValue == Hostile.nobody.rawValue })
        let dropped = stack.counter(try stack.status(status), "dropped") - before
        #expect(dropped == Double(total))
        return "matcher dropped \(Int(dropped))/\(total) (requests \(requests.sent): \(requests.reasons); holdings \(holdings.sent): \(holdings.reasons)); "
            + "2 over ZMQ_MAXMSGSIZE cut off unread"
    }

    // MARK: broker (PULL for decisions, ROUTER for control)

    static func broker(_ stack: Stack) throws -> [String] {
        let before = try stack.status(stack.brokerControl)
        let droppedEvents = { events(stack) { $0.topic == "message.dropped" && $0.publisher == "broker" && $0.data["peer"] == nil } }
        let droppedEventsBefore = droppedEvents()
        let decisionsMetric = #"ferry_broker_events_total{event="decisions.dropped"}"#
        let controlMetric = #"ferry_broker_events_total{event="control.dropped"}"#
        let decisionsMetricBefore = metric(stack, "broker", decisionsMetric)
        let controlMetricBefore = metric(stack, "broker", controlMetric)

        let cut = try connect(stack, .push, stack.broker)
        defer { cut.close() }
        var decisions = try Hostile.overCap(cut, kind: MatchDecision.kind, followUp: Hostile.notAnEnvelope)
        let push = try connect(stack, .push, stack.broker)
        defer { push.close() }
        let invalid = MatchDecision(match: MatchRequest(request: Hostile.badRequest, traceId: "hostile", attempt: 1), sources: [])
        let shapes = Hostile.envelopes(kind: MatchDecision.kind, wrongTypes: #"{"match":"x","sources":5}"#,
                                       invalid: try JSONCoding.encoder.encode(invalid)) + [Hostile.brokenWithdrawal]
        decisions = try decisions + Hostile.burst(push, shapes, extra: [Hostile.oversized(MatchDecision.kind)])
        // Well-formed decisions for requests no server made, for a device that never joined.
        var orphans: [String] = []
        for index in 0..<50 {
            let request = DownloadRequest(requestId: try RequestID("hostile-decision-\(index)"), deviceId: Hostile.nobody,
                                          content: Hostile.unknownSummary, server: stack.originURL)
            try push.send(try MatchDecision(match: MatchRequest(request: request, traceId: "hostile", attempt: 1), sources: []).frames())
            orphans.append(request.requestId.rawValue)
        }

        try waitForCount("the broker's decisions.dropped count", expected: stack.counter(before, "decisions.dropped") + Double(decisions.sent)) {
            stack.counter(try stack.status(stack.brokerControl), "decisions.dropped")
        }
        try waitForCount("the broker's message.dropped events for decisions", expected: Double(droppedEventsBefore + decisions.sent)) {
            Double(droppedEvents())
        }
        try waitUntil("a refusal for each orphan decision") {
            orphans.allSatisfy { id in stack.events.matching("session.failed", requestId: id).contains { $0.data["reason"]?.stringValue == "receiver-not-connected" } }
        }
        #expect(orphans.allSatisfy { stack.events.matching("session.failed", requestId: $0).count == 1 })
        #expect(stack.counter(try stack.status(stack.brokerControl), "sessions.failed") - stack.counter(before, "sessions.failed") == Double(orphans.count))
        #expect(metric(stack, "broker", decisionsMetric) - decisionsMetricBefore == Double(decisions.sent))

        // The control ROUTER, from a DEALER of its own.
        let cutControl = try connect(stack, .dealer, stack.brokerControl)
        defer { cutControl.close() }
        var control = try Hostile.overCap(cutControl, kind: Heartbeat.kind, followUp: Hostile.notAnEnvelope)
        _ = try statusInOrder(cutControl)
        let dealer = try connect(stack, .dealer, stack.brokerControl)
        defer { dealer.close() }
        let impostor = try JSONCoding.encoder.encode(AgentHello(deviceId: try DeviceID("dev-hostile-impostor")))
        let controlShapes = Hostile.envelopes(kind: Heartbeat.kind, wrongTypes: #"{"load":"heavy"}"#, invalid: impostor)
            + [Garbage([Hostile.version, bytes(LinkReady.kind), bytes(#"{"sessionId":"#)], "malformed")]
        control = try control + Hostile.burst(dealer, controlShapes, extra: [Hostile.oversized(Heartbeat.kind)])
        // Well-formed reports about sessions the broker never made, and a relay it never met.
        var unknown = 0
        for _ in 0..<Hostile.rounds {
            let session = SessionID.random()
            let requestId = try RequestID("hostile-session-\(session.hex)")
            try dealer.send(try LinkReady(sessionId: session, address: "100.96.0.9").frames())
            try dealer.send(try LinkClosed(sessionId: session, address: "100.96.0.9", reason: "hostile", counters: LinkCounters()).frames())
            try dealer.send(try SessionFinished(sessionId: session, requestId: requestId, role: .receiver, outcome: .completed, payloadBytes: 1).frames())
            try dealer.send(try SessionFinished(sessionId: session, requestId: requestId, role: .sender, outcome: .completed, payloadBytes: 1).frames())
            try dealer.send(try RelayDraining(relayId: try RelayID("relay-hostile-phantom"), sessions: 0, deadlineMilliseconds: 1).frames())
            unknown += 5
        }
        let report = try statusInOrder(dealer)
        let controlDropped = Int(stack.counter(report, "control.dropped") - stack.counter(before, "control.dropped"))
        // Reports naming sessions or relays the broker doesn't know are well formed (a relay's
        // late report is one), so they are counted apart from the malformed.
        let controlUnknown = Int(stack.counter(report, "control.unknown") - stack.counter(before, "control.unknown"))
        #expect(controlDropped == control.sent, "control.dropped rose by \(controlDropped); sent \(control.sent) malformed")
        #expect(controlUnknown == unknown, "control.unknown rose by \(controlUnknown); sent \(unknown) naming unknown sessions or relays")
        #expect(stack.counter(report, "decisions.dropped") - stack.counter(before, "decisions.dropped") == Double(decisions.sent))
        #expect(stack.counter(report, "sessionsActive") == 0 && stack.counter(report, "agents") == 2)
        #expect(metric(stack, "broker", controlMetric) - controlMetricBefore == Double(control.sent))
        #expect(events(stack) { $0.topic == "message.dropped" && $0.publisher == "broker" && $0.data["peer"] != nil } >= 1)
        #expect(!stack.events.all.contains { $0.topic == "device.joined" && $0.data["deviceId"]?.stringValue == "dev-hostile-impostor" })
        return [
            "broker decisions dropped \(Int(stack.counter(report, "decisions.dropped") - stack.counter(before, "decisions.dropped")))/\(decisions.sent) (\(decisions.reasons)); "
                + "\(orphans.count)/\(orphans.count) orphan decisions refused as receiver-not-connected; 1 over ZMQ_MAXMSGSIZE cut off unread",
            "broker control dropped \(min(controlDropped, control.sent))/\(control.sent) (\(control.reasons)); "
                + "\(controlUnknown)/\(unknown) unknown-session or unknown-relay reports counted; 1 over ZMQ_MAXMSGSIZE cut off unread",
        ]
    }

    // MARK: an agent's control ROUTER

    static func agent(_ stack: Stack, _ agent: Stack.Agent) throws -> String {
        let before = stack.counter(try stack.status(agent.control), "control.dropped")
        let series = #"ferry_agent_events_total{event="control.dropped"}"#
        let metricBefore = metric(stack, "agent-\(agent.name)", series)
        let cut = try connect(stack, .dealer, agent.control)
        defer { cut.close() }
        var tally = try Hostile.overCap(cut, kind: GetCommand.kind, followUp: Hostile.notAnEnvelope)
        _ = try statusInOrder(cut)
        let dealer = try connect(stack, .dealer, agent.control)
        defer { dealer.close() }
        // Never a well-formed `get`: that would start a download on the device's behalf.
        let shapes = Hostile.envelopes(kind: GetCommand.kind, wrongTypes: #"{"contentId":42,"output":["x"]}"#,
                                       invalid: bytes(#"{"contentId":"not-a-content-id"}"#))
        tally = try tally + Hostile.burst(dealer, shapes, extra: [Hostile.oversized(GetCommand.kind)])
        let report = try statusInOrder(dealer)
        let dropped = stack.counter(report, "control.dropped") - before
        #expect(dropped == Double(tally.sent))
        #expect(stack.counter(report, "downloads") == 0)
        #expect(metric(stack, "agent-\(agent.name)", series) - metricBefore == Double(tally.sent))
        return "agent-\(agent.name) control dropped \(Int(dropped))/\(tally.sent) (\(tally.reasons)); 1 over ZMQ_MAXMSGSIZE cut off unread"
    }

    // MARK: the relay's packet ROUTER

    static func relay(_ stack: Stack) throws -> String {
        let endpoint = stack.relays[0]
        let before = try stack.status(endpoint)
        func drops(_ report: StatusReport, _ reason: String) -> Double {
            if case .object(let drops)? = report.counters["drops"] { return drops[reason]?.numberValue ?? 0 }
            return 0
        }
        let metricsBefore = ["unknown-session", "malformed-control"].map { metric(stack, "relay-1", #"ferry_relay_drops_total{reason="\#($0)"}"#) }
        let forged = Data(PacketHeader(kind: .data, sessionId: SessionID.random(), sequence: 0, length: 4).encoded)
        let attach = Data(PacketHeader(kind: .attach, sessionId: SessionID.random(), length: 2).encoded)
        let shapes = [
            Garbage([bytes("not a header")], "unknown-session"),
            Garbage([forged, bytes("evil")], "unknown-session"),
            Garbage([attach, bytes("{}")], "unknown-session"),
            Garbage([Data(), Data(), Data()], "unknown-session"),
            Garbage([bytes("ferry/2"), bytes(StatusQuery.kind), bytes("{}")], "unknown-session"),
            Garbage([Hostile.version, bytes(StatusQuery.kind), bytes(#"{"truncated":"#)], "malformed-control"),
            Garbage([Hostile.version, bytes(LinkOpen.kind), bytes("{}")], "malformed-control"),
            Garbage([Hostile.version, bytes(StatusQuery.kind), Data((0..<64).map { UInt8(255 - $0) })], "malformed-control"),
        ]
        // Its ZMQ_MAXMSGSIZE is one packet plus headers, so an envelope over its limit is far past it.
        let cut = try connect(stack, .dealer, endpoint)
        defer { cut.close() }
        var tally = try Hostile.overCap(cut, kind: StatusQuery.kind, followUp: shapes[0])
        _ = try statusInOrder(cut)
        let dealer = try connect(stack, .dealer, endpoint)
        defer { dealer.close() }
        // A packet just over the largest a session may use, still under the socket's limit.
        let big = Int(ContentSummary.maxPacketSize) + 1
        let oversized = Garbage([Data(PacketHeader(kind: .data, sessionId: SessionID.random(), length: UInt32(big)).encoded), Data(count: big)], "unknown-session")
        tally = try tally + Hostile.burst(dealer, shapes, extra: [oversized, oversized])
        let report = try statusInOrder(dealer)
        let dropped = stack.counter(report, "dropped") - stack.counter(before, "dropped")
        #expect(dropped == Double(tally.sent))
        for (index, reason) in ["unknown-session", "malformed-control"].enumerated() {
            #expect(drops(report, reason) - drops(before, reason) == Double(tally.byReason[reason] ?? 0), "relay drops for \(reason)")
            #expect(metric(stack, "relay-1", #"ferry_relay_drops_total{reason="\#(reason)"}"#) - metricsBefore[index] == Double(tally.byReason[reason] ?? 0))
        }
        #expect(stack.counter(report, "links") == 0)
        return "relay-1 dropped \(Int(dropped))/\(tally.sent) (\(tally.reasons)); 1 over ZMQ_MAXMSGSIZE cut off unread"
    }

    // MARK: the event bus's publishers side (XSUB)

    static func eventBus(_ stack: Stack) throws -> String {
        let status = stack.status["eventbus"]!
        let before = stack.counter(try stack.status(status), "forwarded")
        let marker = bytes(Hostile.marker)
        let watcher = try connect(stack, .sub, stack.eventsOut)
        defer { watcher.close() }
        try watcher.subscribe("")
        func isHostile(_ frames: [Message]) -> Bool {
            frames.first?.string.hasPrefix("hostile") == true || frames.contains { $0.data.range(of: marker) != nil }
        }
        let bus = try publisher(stack, stack.eventsIn)
        defer { bus.close() }
        // The watcher's subscription reaches the bus some time after it connects.
        var seen = 0
        try waitUntil("the watcher to see the bus forward") {
            try bus.send([bytes("hostile.probe")])
            var poller = Poller()
            poller.add(watcher)
            try poller.poll(timeoutMilliseconds: 100)
            while let frames = try watcher.receive(dontWait: true) {
                if isHostile(frames) { seen += 1 }
            }
            return seen > 0
        }
        let probes = seen
        // Some on topics the origin's live status page subscribes to, so it reads them too.
        let shapes: [[Data]] = [
            [bytes("hostile.one-frame")],
            [bytes("hostile.not-json"), bytes("{{{")],
            [bytes("hostile.three"), bytes("{}"), bytes("x")],
            [Data(), marker],
            [bytes("hostile.binary"), Data((0..<64).map { UInt8(255 - $0) })],
            [bytes("transfer.progress"), bytes(#"{"topic":5,"time":[],"publisher":{},"seq":"x","data":"\#(Hostile.marker)"}"#)],
            [bytes("relay.joined"), bytes("\(Hostile.marker) is not JSON")],
            [bytes("fulfilment.recorded"), bytes(#"{"\#(Hostile.marker)":1}"#), bytes("extra")],
        ]
        var sent = 0
        for _ in 0..<Hostile.rounds {
            for frames in shapes {
                try bus.send(frames)
                sent += 1
            }
        }
        // Past `FerryEvent.maxBytes` the bus cuts the publisher off rather than pass it on.
        let oversized = ["hostile.oversized", "transfer.\(Hostile.marker)"]
        for topic in oversized {
            try bus.send([bytes(topic), Data(repeating: 0x20, count: FerryEvent.maxBytes + 1)])
        }
        var received = 0, oversizedSeen = 0
        try waitForCount("the watcher to get the hostile events", expected: Double(sent), timeout: 60) {
            var poller = Poller()
            poller.add(watcher)
            try poller.poll(timeoutMilliseconds: 50)
            while let frames = try watcher.receive(dontWait: true) {
                if oversized.contains(frames.first?.string ?? "") { oversizedSeen += 1 }
                if isHostile(frames) && frames.first?.string != "hostile.probe" { received += 1 }
            }
            return Double(received)
        }
        #expect(oversizedSeen == 0, "the bus passed on an event over its size limit")
        // Without transport keys the bus doesn't read what it forwards: malformed events go to
        // every subscriber, unread (with keys, events must name the key's own publisher).
        let forwarded = stack.counter(try stack.status(status), "forwarded") - before
        #expect(forwarded >= Double(sent + probes))
        return "eventbus forwarded \(received)/\(sent) malformed messages unread (no keys, so no publisher check), cut off \(oversized.count) oversized; forwarded counter +\(Int(forwarded))"
    }

    // MARK: the origin's HTTP API

    static func origin(_ stack: Stack) throws -> String {
        let rejected = { (reason: String) in
            events(stack) { $0.topic == "request.rejected" && $0.publisher == "origin" && $0.data["reason"]?.stringValue == reason }
        }
        let malformedBefore = rejected("malformed")
        let fulfilmentDropsBefore = events(stack) { $0.topic == "message.dropped" && $0.publisher == "origin" && $0.data["kind"]?.stringValue == "fulfilment" }
        let fulfilmentsBefore = try stack.fulfilments().count
        let bodies: [Data] = [
            bytes("this is not json"),
            bytes(#"{"deviceId":"dev-hostile","contentId":"#),
            bytes("[]"),
            bytes("null"),
            bytes("{}"),
            bytes(#"{"deviceId":5,"contentId":true}"#),
            bytes(#"{"deviceId":"has spaces","contentId":"xyz"}"#),
            Data((0..<64).map { UInt8(255 - $0) }),
        ]
        var malformed = 0, refusedFulfilments = 0
        for _ in 0..<(Hostile.rounds / 2) {
            for body in bodies {
                #expect(try stack.http("POST", "/v1/requests", body: body).status == 400)
                malformed += 1
                // Unsigned: refused before it is even read as JSON.
                #expect(try stack.http("POST", "/v1/fulfilments", body: body).status == 401)
                refusedFulfilments += 1
            }
        }
        // Hummingbird reads at most 2 MiB of a body; past that the decode fails like bad JSON.
        let oversized = Data(repeating: 0x20, count: (2 << 20) + 1)
        #expect(try stack.http("POST", "/v1/requests", body: oversized).status == 400)
        malformed += 1
        #expect(try stack.http("POST", "/v1/fulfilments", body: oversized).status == 401)
        refusedFulfilments += 1
        // Sent as the operator (`Stack.http` does), so the refusal is for the content, not for who asked.
        var unknown: [String] = []
        for index in 0..<(Hostile.rounds * 2) {
            let id = "hostile-origin-\(index)"
            let ask = try JSONCoding.encoder.encode(DeviceRequest(requestId: try RequestID(id), deviceId: Hostile.nobody, contentId: Hostile.unknownContent))
            let status = try stack.http("POST", "/v1/requests", body: ask).status
            #expect(status == 404, "a request for unknown content was answered \(status)")
            unknown.append(id)
        }

        try waitForCount("the origin's malformed-request events", expected: Double(malformedBefore + malformed)) { Double(rejected("malformed")) }
        try waitUntil("an unknown-content event for each request") {
            unknown.allSatisfy { id in stack.events.matching("request.rejected", requestId: id).contains { $0.data["reason"]?.stringValue == "unknown-content" } }
        }
        #expect(unknown.allSatisfy { stack.events.matching("request.rejected", requestId: $0).count == 1 })
        let fulfilmentDrops = { events(stack) { $0.topic == "message.dropped" && $0.publisher == "origin" && $0.data["kind"]?.stringValue == "fulfilment" } }
        try waitForCount("the origin's malformed-fulfilment events", expected: Double(fulfilmentDropsBefore + refusedFulfilments)) { Double(fulfilmentDrops()) }
        let scraped = try stack.http("GET", "/metrics")
        let refusedMetric = Stack.sample(String(decoding: scraped.body, as: UTF8.self), #"ferry_origin_refused_total{reason="delivery-signature"}"#) ?? 0
        #expect(refusedMetric >= Double(refusedFulfilments))
        #expect(try stack.fulfilments().count == fulfilmentsBefore)
        #expect(try stack.http("GET", "/health").status == 200)
        return "origin refused \(malformed)/\(malformed) malformed requests (request.rejected events), \(unknown.count)/\(unknown.count) for unknown content; "
            + "\(refusedFulfilments)/\(refusedFulfilments) unsigned fulfilments refused (message.dropped events, ferry_origin_refused_total)"
    }

    // MARK: reporter (PULL)

    /// Sends at once; `finish` waits for what the reporter makes of it.
    struct PendingReporter {
        let stack: Stack
        let sockets: [Socket]
        let tally: Tally
        let orphans: [String]
        let eventsBefore: Int
        let droppedBefore: Double

        func finish() throws -> String {
            defer { for socket in sockets { socket.close() } }
            let dropped = { HostileRun.events(stack) { $0.topic == "message.dropped" && $0.publisher == "reporter" } }
            try HostileRun.waitForCount("the reporter's message.dropped events", expected: Double(eventsBefore + tally.sent)) { Double(dropped()) }
            // The reporter waits its --verify-wait-ms (10 s here) for the broker's record of a
            // request before it refuses a completion for one.
            try waitUntil("a refusal for each completion of an unknown request", timeout: 60) {
                orphans.allSatisfy { id in stack.events.matching("fulfilment.rejected", requestId: id).count == 1 }
            }
            #expect(orphans.allSatisfy { id in
                stack.events.matching("fulfilment.rejected", requestId: id).first?.data["reason"]?.stringValue?.contains("no record") == true
            })
            #expect(dropped() - eventsBefore == tally.sent)
            let counted = stack.counter(try stack.status(stack.status["reporter"]!), "dropped") - droppedBefore
            #expect(counted == Double(tally.sent), "the reporter's dropped counter rose by \(counted); \(tally.sent) were sent")
            #expect(try stack.fulfilments().allSatisfy { !$0.requestId.rawValue.hasPrefix("hostile") })
            return "reporter dropped \(Int(counted))/\(tally.sent) (\(tally.reasons)); "
                + "\(orphans.count)/\(orphans.count) completions of unknown requests refused after the verify wait; 1 over ZMQ_MAXMSGSIZE cut off unread"
        }
    }

    static func reporter(_ stack: Stack) throws -> PendingReporter {
        let eventsBefore = events(stack) { $0.topic == "message.dropped" && $0.publisher == "reporter" }
        let droppedBefore = stack.counter(try stack.status(stack.status["reporter"]!), "dropped")
        let cut = try connect(stack, .push, stack.reporter)
        var tally = try Hostile.overCap(cut, kind: Completion.kind, followUp: Hostile.notAnEnvelope)
        let push = try connect(stack, .push, stack.reporter)
        let unbalanced = Completion(requestId: try RequestID("hostile-unbalanced"), deviceId: Hostile.nobody, contentId: Hostile.unknownContent,
                                    size: 10, sources: [SourceBytes(kind: .origin, bytes: 3)], startedAt: Timestamp.now(), finishedAt: Timestamp.now())
        let shapes = Hostile.envelopes(kind: Completion.kind, wrongTypes: #"{"requestId":1,"deviceId":[],"size":"big","sources":{}}"#,
                                       invalid: try JSONCoding.encoder.encode(unbalanced))
            + [Garbage([Hostile.version, bytes(RequestRecord.kind), bytes(#"{"requestId":"hostile","sessions":"#)], "malformed")]
        tally = try tally + Hostile.burst(push, shapes, extra: [Hostile.oversized(Completion.kind)])
        var orphans: [String] = []
        for index in 0..<50 {
            let id = "hostile-completion-\(index)"
            try push.send(try Completion(requestId: try RequestID(id), deviceId: Hostile.nobody, contentId: Hostile.unknownContent, size: 10,
                                         sources: [SourceBytes(kind: .origin, bytes: 10)], startedAt: Timestamp.now(), finishedAt: Timestamp.now()).frames())
            orphans.append(id)
        }
        return PendingReporter(stack: stack, sockets: [cut, push], tally: tally, orphans: orphans, eventsBefore: eventsBefore,
                               droppedBefore: droppedBefore)
    }
}
