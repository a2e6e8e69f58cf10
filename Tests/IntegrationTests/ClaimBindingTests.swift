import CZeroMQ
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import Testing
import ZeroMQ

/// With transport keys, what a message claims is bound to the key it came with, and the keys
/// themselves to the origin's signed word. Each control docs/security.md lists is tried here
/// on real processes and real sockets, as an enrolled party would try it, and each refusal is
/// checked with its counter or event beside a message the service took, so a check that
/// passed because nothing arrived can't pass.
@Suite(.serialized) struct ClaimsBoundToKeys {
    @Test func eachClaimIsCheckedAgainstItsSendersKey() throws {
        let stack = try Stack(relays: 1, secure: true)
        defer { stack.stop() }
        let claimant = try EnrolledParty(stack, "dev-claimant")
        try Self.noRoutingIdTheBrokerGeneratesCanBeTakenOrSquatted(stack, claimant)
        // Before anything else reaches the matcher: it publishes `message.dropped` for its first drop and every hundredth.
        try Self.anAnnouncementSpeaksOnlyForItsKeysDevice(stack, claimant)
        try Self.aCompletionOnlyForItsKeysDeviceAndARecordOnlyFromTheBroker(stack, claimant)
        try Self.anEventOnlyUnderItsKeysPublisherName(stack, claimant)
        try Self.aRelaysKeyGetsNothingFromTheOrigin(stack, claimant)
        try Self.anAgreementKeyEnrolsOneIdOnly(stack, claimant)
        try Self.anImpostorNamedAfterAnAgentLeavesItsRouteAlone(stack, claimant)
        try Self.aSessionTokenNotFromTheBrokerOpensNoLink(stack)
        try Self.aKeyAnswerNotSignedFreshForTheKeyAdmitsNothing(stack)
    }

    /// A device enrolled at the origin straight over HTTP, as anyone with the standing token
    /// can: its keys are admitted everywhere a device's are, with no agent behind them.
    struct EnrolledParty {
        let id: String
        let keys: DeviceKeys
        var curve: CurveKeyPair { keys.transportKeyPair }

        init(_ stack: Stack, _ id: String) throws {
            self.id = id
            keys = try DeviceKeys.loadOrCreate(directory: stack.directory.appendingPathComponent(id))
            let body = try JSONCoding.encoder.encode(DeviceEnrolment(deviceId: try DeviceID(id), signingKey: keys.signingPublicKey,
                                                                     agreementKey: keys.agreementPublicKey, token: try standingToken(stack)))
            let answer = try stack.http("POST", "/v1/devices", body: body, headers: [:])
            try #require(answer.status == 201, "enrolling \(id): \(answer.status) \(String(decoding: answer.body, as: UTF8.self))")
        }

        /// A socket of `type` connected, as this device, to the fleet service `server`.
        func socket(_ stack: Stack, _ type: SocketType, to server: String, at endpoint: String) throws -> Socket {
            let socket = try stack.context.socket(type)
            try socket.makeCurveClient(curve, serverKey: try stack.fleetKey(.public, server))
            try socket.connect(endpoint)
            return socket
        }
    }

    // MARK: the matcher

    static func anAnnouncementSpeaksOnlyForItsKeysDevice(_ stack: Stack, _ claimant: EnrolledParty) throws {
        let matcher = stack.status["matcher"]!
        try #require(stack.counter(try stack.status(matcher), "dropped") == 0, "the matcher dropped something before the test's announcement")
        let socket = try claimant.socket(stack, .pub, to: "matcher", at: stack.holdings)
        defer { socket.close() }
        var sequence: UInt64 = 0
        func announce(_ device: String, serving: Bool) throws {
            sequence += 1
            let announcement = HoldingsAnnouncement(deviceId: try DeviceID(device), sequence: sequence, contents: [], serving: serving,
                                                    activeUploads: 0, zone: nil, intervalMilliseconds: 60_000)
            _ = try socket.send([Data(HoldingsAnnouncement.topic.utf8)] + announcement.frames(), dontWait: true)
        }
        func updated(_ device: String, serving: Bool) -> Bool {
            stack.events.matching("holdings.updated").contains {
                $0.data["deviceId"]?.stringValue == device && $0.data["serving"] == .bool(serving)
            }
        }
        // A PUB drops what it sends before the matcher's subscription reaches it: the device's
        // own announcement, repeated until the matcher takes it, shows the connection is up.
        try waitUntil("the matcher to take the claimant's own announcement", timeout: 20) {
            try announce(claimant.id, serving: true)
            Thread.sleep(forTimeInterval: 0.1)
            return updated(claimant.id, serving: true)
        }
        // One forged announcement, then one of its own that changes something: once the matcher
        // has published the second, it has judged the first.
        try announce("dev-claim-victim", serving: true)
        try announce(claimant.id, serving: false)
        try stack.events.waitFor("the matcher to take the claimant's second announcement") {
            $0.topic == "holdings.updated" && $0.data["deviceId"]?.stringValue == claimant.id && $0.data["serving"] == .bool(false)
        }
        #expect(stack.counter(try stack.status(matcher), "dropped") == 1)
        let dropped = try stack.events.waitFor("the matcher to publish the drop") {
            $0.topic == "message.dropped" && $0.publisher == "matcher" && $0.data["reason"]?.stringValue?.contains("dev-claim-victim") == true
        }
        #expect(dropped.data["reason"]?.stringValue?.contains("device:\(claimant.id)") == true, "\(dropped.data)")
        #expect(!stack.events.matching("holdings.updated").contains { $0.data["deviceId"]?.stringValue == "dev-claim-victim" })
    }

    // MARK: the reporter

    static func aCompletionOnlyForItsKeysDeviceAndARecordOnlyFromTheBroker(_ stack: Stack, _ claimant: EnrolledParty) throws {
        let reporter = stack.status["reporter"]!
        let before = try stack.status(reporter)
        let droppedMetric = Stack.sample(try stack.scrape("reporter"), "ferry_reporter_dropped_total") ?? 0
        let mark = stack.events.mark
        let content = try ContentID(String(repeating: "d", count: 64))
        let request = try RequestID("req-claim-self-recorded")
        func completion(_ device: String) throws -> [Data] {
            try Completion(requestId: request, deviceId: try DeviceID(device), contentId: content, size: 4096,
                           sources: [SourceBytes(kind: .origin, bytes: 4096)], startedAt: Timestamp.now(), finishedAt: Timestamp.now()).frames()
        }
        let socket = try claimant.socket(stack, .push, to: "reporter", at: stack.reporter)
        defer { socket.close() }
        // A PUSH keeps the order it was given: another device's completion, a record of the
        // device's own making (had it been believed, the completion after it would be recorded
        // at once), then the device's own completion, which waits for the broker's record.
        try socket.send(try completion("dev-claim-victim"))
        try socket.send(try RequestRecord(requestId: request, deviceId: try DeviceID(claimant.id), contentId: content, server: stack.originURL).frames())
        try socket.send(try completion(claimant.id))
        try waitUntil("the claimant's own completion to wait for the broker's record", timeout: 15) {
            stack.counter(try stack.status(reporter), "awaitingRecords") == stack.counter(before, "awaitingRecords") + 1
        }
        #expect(stack.counter(try stack.status(reporter), "dropped") == stack.counter(before, "dropped") + 2)
        #expect(Stack.sample(try stack.scrape("reporter"), "ferry_reporter_dropped_total") == droppedMetric + 2)
        let drops = stack.events.all.dropFirst(mark).filter { $0.topic == "message.dropped" && $0.publisher == "reporter" }
            .compactMap { $0.data["reason"]?.stringValue }
        #expect(drops.contains { $0.contains("completion for dev-claim-victim") && $0.contains("device:\(claimant.id)") }, "\(drops)")
        #expect(drops.contains { $0.contains("request record") && $0.contains("device:\(claimant.id)") }, "\(drops)")
        #expect(stack.events.matching("fulfilment.recorded", requestId: request.rawValue).isEmpty)
    }

    // MARK: the event bus

    /// `TrustAttacks/aDevicePublishesOnlyItsOwnTopics` sends a topic a device may not publish,
    /// under its own name; here the topic is a device's and the name another's.
    static func anEventOnlyUnderItsKeysPublisherName(_ stack: Stack, _ claimant: EnrolledParty) throws {
        let socket = try claimant.socket(stack, .pub, to: "eventbus", at: stack.eventsIn)
        defer { socket.close() }
        func send(as publisher: String, _ request: String) throws {
            let event = FerryEvent(topic: "transfer.progress", time: Timestamp.now(), publisher: publisher, seq: 1, requestId: request,
                                   sessionId: nil, data: ["deviceId": .string(claimant.id), "receivedBytes": JSONValue(1), "totalBytes": JSONValue(2)])
            _ = try socket.send(try event.frames, dontWait: true)
        }
        func arrived(_ request: String) -> Bool { !stack.events.matching("transfer.progress", requestId: request).isEmpty }
        try waitUntil("the bus to forward the claimant's own event", timeout: 20) {
            try send(as: "agent:\(claimant.id)", "req-claim-bus-up")
            Thread.sleep(forTimeInterval: 0.1)
            return arrived("req-claim-bus-up")
        }
        let bus = stack.status["eventbus"]!
        let refused = stack.counter(try stack.status(bus), "refused")
        let refusedMetric = Stack.sample(try stack.scrape("eventbus"), "ferry_events_refused_total") ?? 0
        try send(as: "agent:dev-claim-victim", "req-claim-other-publisher")
        try send(as: "agent:\(claimant.id)", "req-claim-own-publisher")
        try stack.events.waitFor(topic: "transfer.progress", requestId: "req-claim-own-publisher")
        #expect(!arrived("req-claim-other-publisher"))
        #expect(stack.counter(try stack.status(bus), "refused") == refused + 1)
        #expect(Stack.sample(try stack.scrape("eventbus"), "ferry_events_refused_total") == refusedMetric + 1)
    }

    // MARK: the origin

    static func aRelaysKeyGetsNothingFromTheOrigin(_ stack: Stack, _ claimant: EnrolledParty) throws {
        let relayKeys = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: stack.path("relay-1")), fileName: "relay.keys")
        let relayId = try DeviceID(try String(contentsOfFile: stack.path("relay-1/relay.id"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines))
        let content = try stack.publish(try stack.randomFile("relay-asks.bin", mebibytes: 1))
        func signed(_ keys: DeviceKeys, _ id: DeviceID, _ method: String, _ path: String, range: String? = nil,
                    body: Data = Data()) throws -> [String: String] {
            var headers = ["Authorization": try keys.authorization(deviceId: id, method: method, path: path, range: range, body: body,
                                                                   nowMilliseconds: SessionTokens.nowMilliseconds())]
            if let range { headers["Range"] = range }
            return headers
        }
        func refusals() throws -> Double {
            Stack.sample(String(decoding: try stack.http("GET", "/metrics").body, as: UTF8.self), #"ferry_origin_refused_total{reason="not-a-device"}"#) ?? 0
        }
        let manifest = "/v1/content/\(content.hex)/manifest", data = "/v1/content/\(content.hex)/data", key = "/v1/content/\(content.hex)/key"
        // The same request signed by an enrolled device is served: the refusals below are the kind's.
        #expect(try stack.http("GET", manifest, headers: try signed(claimant.keys, try DeviceID(claimant.id), "GET", manifest)).status == 200)

        let before = try refusals()
        let mark = stack.events.mark
        let ask = try JSONCoding.encoder.encode(DeviceRequest(requestId: try RequestID("req-claim-relay-asks"), deviceId: relayId, contentId: content))
        let answers = [
            ("manifest", try stack.http("GET", manifest, headers: try signed(relayKeys, relayId, "GET", manifest))),
            ("range", try stack.http("GET", data, headers: try signed(relayKeys, relayId, "GET", data, range: "bytes=0-1023"))),
            ("content key", try stack.http("GET", key, headers: try signed(relayKeys, relayId, "GET", key))),
            ("request", try stack.http("POST", "/v1/requests", body: ask, headers: try signed(relayKeys, relayId, "POST", "/v1/requests", body: ask))),
        ]
        for (what, answer) in answers {
            let reason = (try? JSONCoding.decoder.decode(ErrorBody.self, from: answer.body))?.reason
            #expect(answer.status == 403 && reason == "not-a-device", "a relay's \(what): \(answer.status) \(reason ?? "")")
        }
        #expect(try refusals() == before + 4)
        try stack.events.waitFor("the origin to reject the relay's request", after: mark) {
            $0.topic == "request.rejected" && $0.requestId == "req-claim-relay-asks" && $0.data["deviceId"]?.stringValue == relayId.rawValue
        }
        #expect(stack.events.matching("request.received", requestId: "req-claim-relay-asks").isEmpty)
    }

    static func anAgreementKeyEnrolsOneIdOnly(_ stack: Stack, _ claimant: EnrolledParty) throws {
        let fresh = try DeviceKeys.loadOrCreate(directory: stack.directory.appendingPathComponent("dev-claim-second"))
        func enrol(agreementKey: String) throws -> (status: Int, reason: String) {
            let body = try JSONCoding.encoder.encode(DeviceEnrolment(deviceId: try DeviceID("dev-claim-second"), signingKey: fresh.signingPublicKey,
                                                                     agreementKey: agreementKey, token: try standingToken(stack)))
            let answer = try stack.http("POST", "/v1/devices", body: body, headers: [:])
            return (answer.status, (try? JSONCoding.decoder.decode(ErrorBody.self, from: answer.body))?.reason ?? "")
        }
        func refusals() throws -> Double {
            Stack.sample(String(decoding: try stack.http("GET", "/metrics").body, as: UTF8.self), #"ferry_origin_refused_total{reason="device-keys-differ"}"#) ?? 0
        }
        let before = try refusals()
        let mark = stack.events.mark
        // A new id and a new signing key, with the claimant's transport key: two ids for one key.
        #expect(try enrol(agreementKey: claimant.keys.agreementPublicKey) == (409, "device-keys-differ"))
        #expect(try refusals() == before + 1)
        try stack.events.waitFor("the origin to publish the refused enrolment", after: mark) {
            $0.topic == "request.rejected" && $0.data["reason"]?.stringValue == "device-keys-differ" && $0.data["deviceId"]?.stringValue == "dev-claim-second"
        }
        // The same id, token and signing key with an agreement key of its own enrol.
        #expect(try enrol(agreementKey: fresh.agreementPublicKey) == (201, ""))
    }

    // MARK: the broker's routes

    /// The first routing id libzmq gives a connection that names none, at a process's second
    /// ROUTER-type socket, while C `rand()` is unseeded: glibc's third and fourth draws from seed
    /// 1. The broker's ZAP handler (a REP) is its first such socket, its control ROUTER the second.
    static let unseededControlRoutingId: UInt32 = 0xe43c_9869

    static func routingId(_ counter: UInt32) -> [UInt8] { [0] + withUnsafeBytes(of: counter.bigEndian) { Array($0) } }

    /// With keys, parties name no routing id and the broker routes each by the id its ROUTER
    /// generated: `0x00` and a counter. libzmq reserves that zero byte but lets a client choose
    /// such an id all the same, so were the counter predictable, an enrolled device naming the
    /// id of a party's connection would take its route (`ROUTER_HANDOVER` gives a named id to
    /// the newest connection), and one naming the ids ahead of the counter would abort the
    /// broker (libzmq asserts when it generates an id a client holds). A broker of its own, so
    /// the test knows how many connections it has numbered: none.
    static func noRoutingIdTheBrokerGeneratesCanBeTakenOrSquatted(_ stack: Stack, _ claimant: EnrolledParty) throws {
        let victim = try EnrolledParty(stack, "dev-route-victim")
        let control = "tcp://127.0.0.1:\(Ports.free())"
        try stack.start("route-broker", "ferry-broker", [
            "--bind", "tcp://127.0.0.1:\(Ports.free())", "--control-bind", control, "--reporter", "tcp://127.0.0.1:\(Ports.free())",
            "--matcher", "tcp://127.0.0.1:\(Ports.free())", "--heartbeat-ms", "200"])
        defer { stack.signal("route-broker", SIGTERM) }
        func dealer(_ keys: CurveKeyPair, routingId: [UInt8]?) throws -> Socket {
            let socket = try stack.context.socket(.dealer)
            if let routingId { try socket.setOption(ZMQ_ROUTING_ID, bytes: routingId) }
            try socket.makeCurveClient(keys, serverKey: try stack.fleetKey(.public, "broker"))
            try socket.connect(control)
            return socket
        }
        func kinds(_ socket: Socket, for seconds: TimeInterval) throws -> [String] {
            try received(on: socket, for: seconds) { (try? Envelope(frames: $0.map(\.data)).kind) ?? "unreadable" }
        }
        // Waiting for the broker under an id of its own choosing numbers nothing.
        let probe = try dealer(try stack.fleetKeyPair("operator"), routingId: Array("probe-route-broker".utf8))
        var sockets = [probe]
        defer { sockets.forEach { $0.close() } }
        try waitUntil("the second broker to answer", timeout: 20) {
            try probe.send(try StatusQuery().frames(), dontWait: true)
            return try kinds(probe, for: 0.2).contains(StatusReport.kind)
        }

        // The victim's is the first connection it numbers.
        let victimSocket = try dealer(victim.curve, routingId: nil)
        sockets.append(victimSocket)
        try victimSocket.send(try AgentHello(deviceId: try DeviceID(victim.id)).frames())
        try waitUntil("the victim to be welcomed", timeout: 20) { try kinds(victimSocket, for: 0.2).contains(Welcome.kind) }
        let impostor = try dealer(claimant.curve, routingId: routingId(unseededControlRoutingId))
        sockets.append(impostor)
        try impostor.send(try StatusQuery().frames())
        try waitUntil("the impostor's connection to be answered", timeout: 20) { try kinds(impostor, for: 0.2).contains(StatusReport.kind) }
        // The broker sends each agent a heartbeat every 200 ms, to the route it keeps for it.
        var toVictim: [String] = []
        try waitUntil("three heartbeats to reach the victim once the impostor is connected", timeout: 10) {
            toVictim += try kinds(victimSocket, for: 0.1)
            return toVictim.filter { $0 == Heartbeat.kind }.count >= 3
        }
        let toImpostor = try kinds(impostor, for: 0.1)
        #expect(toImpostor.isEmpty, "the impostor got the victim's traffic: \(toImpostor)")

        // Ids ahead of the counter, then a connection naming none, which gets the next.
        for counter in 1...8 {
            let squatter = try dealer(claimant.curve, routingId: routingId(unseededControlRoutingId &+ UInt32(counter)))
            sockets.append(squatter)
            try squatter.send(try StatusQuery().frames())
            try waitUntil("squatter \(counter) to be answered", timeout: 20) { try kinds(squatter, for: 0.1).contains(StatusReport.kind) }
        }
        let unnamed = try dealer(try stack.fleetKeyPair("operator"), routingId: nil)
        sockets.append(unnamed)
        try unnamed.send(try StatusQuery().frames())
        #expect(try kinds(unnamed, for: 2).contains(StatusReport.kind), "a connection naming no id got no answer")
        #expect(stack.processes["route-broker"]?.isRunning == true, "the broker died: see logs/route-broker.log")
    }

    /// Without keys a party's routing id is its id and the broker hands a reconnecting id the
    /// route (`ROUTER_HANDOVER`), so a connection named after an agent would take its traffic.
    static func anImpostorNamedAfterAnAgentLeavesItsRouteAlone(_ stack: Stack, _ claimant: EnrolledParty) throws {
        let holder = try stack.startAgent("rt-holder"), victim = try stack.startAgent("rt-victim")
        let file = try stack.randomFile("routed.bin", mebibytes: 1)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: holder).ok)
        try waitForHoldings(stack, holder, hold: content)

        let impostor = try stack.context.socket(.dealer)
        defer { impostor.close() }
        try impostor.setIdentity(victim.deviceId)
        try impostor.makeCurveClient(claimant.curve, serverKey: try stack.fleetKey(.public, "broker"))
        try impostor.connect(stack.brokerControl)
        try impostor.send(try AgentHello(deviceId: try DeviceID(victim.deviceId)).frames())
        try stack.events.waitFor("the broker to refuse the impostor's hello for the victim") {
            $0.topic == "message.dropped" && $0.publisher == "broker" && $0.data["peer"]?.stringValue == claimant.id
                && $0.data["kind"]?.stringValue == AgentHello.kind
        }
        // Its hello as itself is welcomed on this very connection: what is routed to it arrives.
        try impostor.send(try AgentHello(deviceId: try DeviceID(claimant.id)).frames())
        var heard: [String] = []
        func drain() throws {
            while let frames = try impostor.receive(dontWait: true) {
                heard.append((try? Envelope(frames: frames.map(\.data)).kind) ?? "unreadable")
            }
        }
        try waitUntil("the impostor to be welcomed as itself", timeout: 10) {
            try drain()
            return heard.contains(Welcome.kind)
        }

        let copy = stack.directory.appendingPathComponent("routed-copy.bin")
        let got = try stack.get(content, via: victim, output: copy)
        #expect(got.ok && got.sources.map(\.kind) == [.peer], "the victim's session went elsewhere: \(got.sources) \(got.error ?? "")")
        #expect(try Data(contentsOf: copy) == Data(contentsOf: file))
        try drain()
        #expect(Set(heard).isSubset(of: [Welcome.kind, Heartbeat.kind]), "the impostor got the victim's traffic: \(heard)")
        #expect(try stack.status(victim.control).counters["welcomed"] == .bool(true))
    }

    // MARK: the agent and its session tokens

    /// The broker's side of an agent's dialog, bound with the broker's fleet key so the agent
    /// takes it for the broker.
    final class FakeBroker {
        let endpoint = "tcp://127.0.0.1:\(Ports.free())"
        let socket: Socket
        private(set) var agent: Data?

        init(_ stack: Stack) throws {
            socket = try stack.context.socket(.router)
            try socket.makeCurveServer(try stack.fleetKeyPair("broker"), domain: "parties")
            try socket.bind(endpoint)
        }

        /// The next message of `kind` the agent sends that `accept` takes; others are passed over.
        func next(_ kind: String, timeout: TimeInterval = 30, _ accept: (Envelope) -> Bool = { _ in true }) throws -> Envelope {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                var poller = Poller()
                poller.add(socket)
                try poller.poll(timeoutMilliseconds: 100)
                while let frames = try socket.receive(dontWait: true) {
                    guard frames.count == 4, let envelope = try? Envelope(frames: frames.dropFirst().map(\.data)) else { continue }
                    agent = frames[0].data
                    if envelope.kind == kind && accept(envelope) { return envelope }
                }
            }
            throw StackError("timed out after \(Int(timeout)) s waiting for the agent's \(kind)")
        }

        func send<M: WireMessage>(_ message: M) throws {
            guard let agent else { throw StackError("no agent has spoken to the fake broker") }
            try socket.send([agent] + message.frames())
        }

        func close() { socket.close() }
    }

    static func aSessionTokenNotFromTheBrokerOpensNoLink(_ stack: Stack) throws {
        let broker = try FakeBroker(stack)
        defer { broker.close() }
        let control = "tcp://127.0.0.1:\(Ports.free())"
        try stack.start("agent-tokens", "ferry-agent", [
            "--data-dir", stack.path("agent-tokens"), "--control", control, "--origin", stack.originURL, "--broker", broker.endpoint,
            "--holdings", stack.holdings, "--reporter", stack.reporter, "--origin-public-key", stack.originPublicKey,
            "--join-token-file", stack.path("origin/join-tokens/device.token"), "--output-dir", stack.directory.path,
        ])
        let hello = try broker.next(AgentHello.kind).decode(AgentHello.self)
        let tokenKey = SigningKey.random()
        try broker.send(Welcome(heartbeatMilliseconds: 1000, tokenKey: tokenKey.publicKey))
        try stack.events.waitFor("the agent to enrol") { $0.topic == "device.enrolled" && $0.data["deviceId"]?.stringValue == hello.deviceId.rawValue }

        let relayId = try RelayID(try String(contentsOfFile: stack.path("relay-1/relay.id"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        let relayKey = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: stack.path("relay-1")), fileName: "relay.keys").agreementPublicKey
        /// A receiver's session.open for content the agent doesn't hold: it takes the download on
        /// as pushed to it, and reaches the token once it has the manifest and the content key.
        func open(_ name: String, signedBy key: SigningKey, relayKey: String?) throws -> SessionOpen {
            let content = try stack.publish(try stack.randomFile("\(name).bin", mebibytes: 1))
            let manifest = try JSONCoding.decoder.decode(Manifest.self, from: try stack.http("GET", "/v1/content/\(content.hex)/manifest").body)
            let session = SessionID.random(), address = "100.96.7.1"
            let token = try SessionTokens.issue(SessionGrant(sessionId: session, relayId: relayId, address: address, role: .receiver,
                                                             expiresAt: SessionTokens.nowMilliseconds() + 120_000, relayKey: relayKey,
                                                             deviceId: hello.deviceId), with: key)
            let open = SessionOpen(sessionId: session, requestId: try RequestID("req-claim-\(name)"), traceId: "trace-\(name)", role: .receiver,
                                   content: manifest.summary, address: address, peerAddress: "100.96.7.2", peerDevice: try DeviceID("dev-claim-sender"),
                                   relayEndpoint: stack.relays[0], relays: [relayId], window: 16, token: token)
            try broker.send(open)
            return open
        }
        func refused(_ open: SessionOpen, _ what: String) throws {
            let finished = try broker.next(SessionFinished.kind) {
                (try? $0.decode(SessionFinished.self))?.sessionId == open.sessionId
            }.decode(SessionFinished.self)
            #expect(finished.role == .receiver && finished.outcome == .failed && finished.reason == "link-spawn-failed", "\(what): \(finished)")
            let fallback = try stack.events.waitFor("the agent to fetch from the origin after \(what)") {
                $0.topic == "transfer.started" && $0.requestId == open.requestId.rawValue && $0.data["source"]?.stringValue == "origin"
            }
            #expect(fallback.data["reason"]?.stringValue == "link-spawn-failed", "\(what): \(fallback.data)")
            try stack.events.waitFor(topic: "transfer.completed", requestId: open.requestId.rawValue)
            #expect(stack.events.matching("link.spawned", requestId: open.requestId.rawValue).isEmpty, "\(what) opened a link")
        }
        try refused(try open("forged-token", signedBy: SigningKey.random(), relayKey: relayKey), "a token the broker's key didn't sign")
        try refused(try open("no-relay-key", signedBy: tokenKey, relayKey: nil), "a token naming no relay key")
        // A token the welcome's key signed, naming the relay's key, does open a link.
        let honest = try open("honest-token", signedBy: tokenKey, relayKey: relayKey)
        let spawned = try stack.events.waitFor("the agent to open a link for a token from the broker") {
            $0.topic == "link.spawned" && $0.requestId == honest.requestId.rawValue
        }
        #expect(spawned.data["role"]?.stringValue == "receiver")
    }

    // MARK: the key registry

    /// A matcher of its own, asking a registry the test runs (python3's http.server over a
    /// directory of answers the test wrote) whether a key is enrolled.
    static func aKeyAnswerNotSignedFreshForTheKeyAdmitsNothing(_ stack: Stack) throws {
        let keysDirectory = try #require(stack.keysDirectory)
        let originKey = try SigningKey.loadOrCreate(at: URL(fileURLWithPath: "\(keysDirectory)/secret/\(FleetKeys.signingKeyName)"))
        let answers = stack.directory.appendingPathComponent("registry/v1/transport-keys")
        try FileManager.default.createDirectory(at: answers, withIntermediateDirectories: true)
        func write(for key: CurveKeyPair, naming named: [UInt8]? = nil, id: String, issuedAt: Int64 = SessionTokens.nowMilliseconds(),
                   signedBy signer: SigningKey?) throws {
            let answer = try JSONCoding.encoder.encode(TransportKeyAnswer(key: Data(named ?? key.publicKey).base64EncodedString(), kind: .device,
                                                                          id: id, issuedAt: issuedAt))
            let signature = try signer.map { try $0.signature(for: answer).base64EncodedString() } ?? ""
            try JSONCoding.encoder.encode(SignedTransportKeyAnswer(answer: answer.base64EncodedString(), signature: signature))
                .write(to: answers.appendingPathComponent(Hex.encode(key.publicKey)))
        }
        let unsigned = try CurveKeyPair.generate(), otherSigner = try CurveKeyPair.generate(), otherKeys = try CurveKeyPair.generate(),
            stale = try CurveKeyPair.generate(), admitted = try CurveKeyPair.generate()
        try write(for: unsigned, id: "dev-registry-unsigned", signedBy: nil)
        try write(for: otherSigner, id: "dev-registry-other-signer", signedBy: SigningKey.random())
        try write(for: otherKeys, naming: try CurveKeyPair.generate().publicKey, id: "dev-registry-other-key", signedBy: originKey)
        try write(for: stale, id: "dev-registry-stale", issuedAt: SessionTokens.nowMilliseconds() - 120_000, signedBy: originKey)

        let registryPort = Ports.free()
        let registryLog = stack.path("logs/registry.log")
        _ = FileManager.default.createFile(atPath: registryLog, contents: nil)
        let registry = Process()
        registry.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        registry.arguments = ["-m", "http.server", String(registryPort), "--bind", "127.0.0.1", "--directory", stack.path("registry")]
        registry.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: registryLog))
        registry.standardError = registry.standardOutput
        try registry.run()
        // It inherits the test's blocked signals, SIGTERM among them.
        defer { kill(registry.processIdentifier, SIGKILL); registry.waitUntilExit() }
        try waitUntil("the registry to answer", timeout: 15) {
            (try? BlockingHTTP.get(URL(string: "http://127.0.0.1:\(registryPort)/")!, timeout: 1).ok) == true
        }

        let holdings = "tcp://127.0.0.1:\(Ports.free())", metricsPort = Ports.free()
        let matcher = Process()
        matcher.executableURL = Stack.binaries.appendingPathComponent("ferry-matcher")
        matcher.arguments = ["--bind", "tcp://127.0.0.1:\(Ports.free())", "--holdings-bind", holdings, "--broker", "tcp://127.0.0.1:\(Ports.free())",
                             "--status-bind", "tcp://127.0.0.1:\(Ports.free())", "--events-in", stack.eventsIn, "--transport-keys", keysDirectory,
                             "--key-registry", "http://127.0.0.1:\(registryPort)", "--metrics-bind", "127.0.0.1:\(metricsPort)"]
        matcher.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
        let matcherLog = stack.path("logs/registry-matcher.log")
        _ = FileManager.default.createFile(atPath: matcherLog, contents: nil)
        matcher.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: matcherLog))
        matcher.standardError = matcher.standardOutput
        try matcher.run()
        defer { matcher.terminate(); matcher.waitUntilExit() }

        func client(_ keys: CurveKeyPair) throws -> Socket {
            let socket = try stack.context.socket(.pub)
            try socket.makeCurveClient(keys, serverKey: try stack.fleetKey(.public, "matcher"))
            try socket.connect(holdings)
            return socket
        }
        // One at a time, each closed once refused: a refused key is asked again every second
        // while it retries, and never-admitted keys share 5 look-ups a second from one address.
        for (keys, what) in [(unsigned, "an unsigned answer"), (otherSigner, "an answer signed by another key"),
                             (otherKeys, "an answer for another key"), (stale, "an answer two minutes old")] {
            let socket = try client(keys)
            defer { socket.close() }
            let refusal = try stack.events.waitFor("the matcher to refuse a key after \(what)", timeout: 20) {
                $0.topic == "transport.refused" && $0.publisher == "matcher" && $0.data["key"]?.stringValue == Data(keys.publicKey).base64EncodedString()
            }
            #expect(refusal.data["domain"]?.stringValue == "parties", "\(what): \(refusal.data)")
            let asked = try String(contentsOfFile: registryLog, encoding: .utf8)
            #expect(asked.contains("GET /v1/transport-keys/\(Hex.encode(keys.publicKey)) HTTP/1.1\" 200"), "\(what) was never served: \(asked)")
        }
        let refusedMetric = Stack.sample(try scrape(port: metricsPort), #"ferry_transport_refused_total{domain="parties"}"#) ?? 0
        #expect(refusedMetric >= 4)

        // The same registry's fresh answer, signed by the origin's key for the key asked about,
        // lets a device in: the refusals above were the answers'.
        try write(for: admitted, id: "dev-registry-admitted", signedBy: originKey)
        let socket = try client(admitted)
        defer { socket.close() }
        var sequence: UInt64 = 0
        try waitUntil("the matcher to take an announcement from the admitted key", timeout: 20) {
            sequence += 1
            let announcement = HoldingsAnnouncement(deviceId: try DeviceID("dev-registry-admitted"), sequence: sequence, contents: [], serving: true,
                                                    activeUploads: 0, zone: nil, intervalMilliseconds: 60_000)
            _ = try socket.send([Data(HoldingsAnnouncement.topic.utf8)] + announcement.frames(), dontWait: true)
            Thread.sleep(forTimeInterval: 0.1)
            return stack.events.matching("holdings.updated").contains { $0.data["deviceId"]?.stringValue == "dev-registry-admitted" }
        }
        #expect(!stack.events.matching("transport.refused").contains { $0.data["key"]?.stringValue == Data(admitted.publicKey).base64EncodedString() })
    }

    static func scrape(port: UInt16) throws -> String {
        String(decoding: try BlockingHTTP.get(URL(string: "http://127.0.0.1:\(port)/metrics")!, timeout: 5).body, as: UTF8.self)
    }
}

private func standingToken(_ stack: Stack) throws -> String {
    try String(contentsOfFile: stack.path("origin/join-tokens/device.token"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
}
