@testable import FerryBroker
import FerryProtocol
import FerryService
import Foundation
import Testing

/// The broker's decisions without a socket: hellos, decisions and reports in, the messages it
/// would send and the events it would publish out. The integration tests show the same on
/// processes; these show each decision alone, in milliseconds.
@Suite struct SessionBrokerDecisions {
    let config = BrokerConfig(bind: "", controlBind: "", reporter: "", matcher: "", eventsIn: "", addressPool: "100.96.0.0/24",
                              window: 32, heartbeatMilliseconds: 1000)

    /// A broker with devices a, b and c and relays r1 and r2 said hello at `start`.
    func broker(relays: [String] = ["r1", "r2"], at start: ContinuousClock.Instant) throws -> SessionBroker {
        let broker = try SessionBroker(config: config, logger: .init(label: "test"))
        for name in ["a", "b", "c"] { _ = broker.control(try from(name, AgentHello(deviceId: device(name))), peer: nil, now: start) }
        for name in relays {
            _ = broker.control(try from(name, RelayHello(relayId: try RelayID(name), endpoint: "tcp://\(name):7200")), peer: nil, now: start)
        }
        return broker
    }

    func from<M: WireMessage>(_ party: String, _ message: M) throws -> [Data] { [Data(party.utf8)] + (try message.frames()) }

    func decided(_ id: String, for receiver: String, sources: [String]) throws -> [Data] {
        try MatchDecision(match: MatchRequest(request: request(id, from: receiver), traceId: "t-\(id)", attempt: 1),
                          sources: sources.map(device)).frames()
    }

    /// Each message of `kind` the effects send, with where it goes.
    func sent<M: WireMessage>(_ type: M.Type, in effects: [SessionBroker.Effect]) throws -> [(M, SessionBroker.Destination)] {
        try effects.compactMap { effect in
            guard case .send(let frames, let destination, _) = effect, frames[1] == Data(M.kind.utf8) else { return nil }
            return (try M.decode(frames: frames), destination)
        }
    }

    func published(_ topic: EventTopic, in effects: [SessionBroker.Effect]) -> [Publication] {
        effects.compactMap { if case .publish(let publication) = $0, publication.topic == topic { publication } else { nil } }
    }

    @Test func aDecisionBecomesASessionThatOpensWhenItsRelayIsReady() throws {
        let start = ContinuousClock.now
        let broker = try broker(at: start)
        let effects = broker.decision(try decided("r-1", for: "a", sources: ["b"]))
        let opens = try sent(LinkOpen.self, in: effects)
        let open = try #require(opens.first)
        guard case .party(let relay) = open.1, ["r1", "r2"].contains(relay) else { throw TestFailure("link.open went to \(open.1)") }
        // If the relay can't be reached the session is given up, not left waiting.
        #expect(effects.contains { if case .send(_, _, .abandon(open.0.sessionId, _)) = $0 { true } else { false } })
        #expect(published(.sessionBrokered, in: effects).count == 1)
        #expect(try sent(SessionOpen.self, in: effects).isEmpty, "parties were told before the relay was ready")

        let ready = broker.control(try from(relay, LinkReady(sessionId: open.0.sessionId, address: open.0.address)), peer: nil, now: start)
        let told = try sent(SessionOpen.self, in: ready)
        #expect(Set(told.map { "\($0.1)" }) == ["party(\"a\")", "party(\"b\")"])
        #expect(Set(told.map(\.0.role)) == [.receiver, .sender])

        // The same request again is the same session, resent, never a second one.
        let retried = broker.decision(try decided("r-1", for: "a", sources: ["b"]))
        #expect(try sent(LinkOpen.self, in: retried).isEmpty)
        #expect(published(.sessionResent, in: retried).count == 1)
        #expect(broker.sessions.count == 1)
    }

    /// A striped decision is a session per stripe, each telling both devices its stripe; a
    /// retry resends them all; a stripe whose sender sends nothing gets a new path from the
    /// other sources alone, keeping its stripe; a stripe nobody connected can send goes to the
    /// origin alone; the request is finished only when its last stripe's session is.
    @Test func aStripedDecisionIsASessionPerStripeAndEachStripeGetsItsOwnNewPath() throws {
        let start = ContinuousClock.now
        let broker = try broker(at: start)
        let match = MatchRequest(request: request("r-s", from: "a"), traceId: "t", attempt: 1)
        let striped = try MatchDecision(match: match, sources: [device("b"), device("c")], stripes: [[device("b"), device("c")], [device("c"), device("b")]]).frames()
        let effects = broker.decision(striped)
        let opens = try sent(LinkOpen.self, in: effects)
        #expect(opens.count == 2 && broker.sessions.count == 2)
        #expect(try sent(SourceTaken.self, in: effects).isEmpty, "a striped request's device is in no swarm")
        #expect(published(.sessionBrokered, in: effects).map { $0.fields["sender"] } == ["b", "c"])
        #expect(published(.sessionBrokered, in: effects).map { $0.fields["stripe"] } == [.object(["index": 0, "count": 2]), .object(["index": 1, "count": 2])])
        var told: [SessionOpen] = []
        for (open, destination) in opens {
            guard case .party(let relay) = destination else { throw TestFailure("\(destination)") }
            told += try sent(SessionOpen.self, in: broker.control(try from(relay, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil, now: start)).map(\.0)
        }
        #expect(told.filter { $0.role == .receiver }.map(\.stripe) == [Stripe(0, of: 2), Stripe(1, of: 2)])
        #expect(told.filter { $0.role == .sender }.map { "\($0.peerDevice)<-\($0.stripe!)" } == ["a<-1/2", "a<-2/2"])
        let whole = try #require(try sent(LinkOpen.self, in: broker.decision(try decided("r-w", for: "c", sources: ["b"]))).first?.0.quotaBytes)
        let halfQuota = whole - summaryA.size / 2 - summaryA.size / 16
        #expect(opens.map(\.0.quotaBytes) == [halfQuota, halfQuota], "a stripe's relay may carry its share, not the whole")

        let retried = broker.decision(striped)
        #expect(try sent(LinkOpen.self, in: retried).isEmpty && published(.sessionResent, in: retried).count == 2)

        let second = try #require(told.first { $0.role == .receiver && $0.stripe == Stripe(1, of: 2) })
        let silent = SessionFinished(sessionId: second.sessionId, requestId: second.requestId, role: .receiver, outcome: .failed, payloadBytes: 0,
                                     reason: SenderSilent.reason)
        let repathed = broker.control(try from("a", silent), peer: nil, now: start)
        #expect(published(.sessionRepathed, in: repathed).first?.fields["sender"] == "b")
        #expect(published(.sessionBrokered, in: repathed).first?.fields["stripe"] == .object(["index": 1, "count": 2]))
        #expect(try sent(OriginDirective.self, in: repathed).isEmpty)

        // The first stripe done: the request still has the second's session, so a retry resends it.
        let first = try #require(told.first { $0.role == .receiver && $0.stripe == Stripe(0, of: 2) })
        let firstRelay = broker.sessions[first.sessionId]!.relay.id.rawValue
        _ = broker.control(try from("a", SessionFinished(sessionId: first.sessionId, requestId: first.requestId, role: .receiver, outcome: .completed,
                                                         payloadBytes: summaryA.size / 2)), peer: nil, now: start)
        _ = broker.control(try from(firstRelay, LinkClosed(sessionId: first.sessionId, address: "x", reason: "done", counters: LinkCounters())),
                           peer: nil, now: start)
        #expect(broker.sessions[first.sessionId] == nil)
        let stillRunning = broker.decision(striped)
        #expect(published(.sessionResent, in: stillRunning).map { $0.fields["state"] } == ["awaiting-relay"])

        // Of two stripes, the one only an unconnected device could send goes to the origin alone.
        let half = MatchRequest(request: request("r-h", from: "a"), traceId: "t", attempt: 1)
        let partly = broker.decision(try MatchDecision(match: half, sources: [device("b"), device("x")], stripes: [[device("b")], [device("x")]]).frames())
        #expect(try sent(LinkOpen.self, in: partly).count == 1)
        #expect(try sent(OriginDirective.self, in: partly).map { $0.0.stripe } == [Stripe(1, of: 2)])
        #expect(published(.sessionOriginDirected, in: partly).first?.fields["stripe"] == .object(["index": 1, "count": 2]))
    }

    /// A receiver says a stripe is the slower one (another is done): the broker gives it a new
    /// path from a source with no stripe of the request still running, as a re-plan.
    @Test func aSlowerStripeGetsANewPathFromASourceThatIsDone() throws {
        let start = ContinuousClock.now
        let broker = try broker(at: start)
        let match = MatchRequest(request: request("r-s", from: "a"), traceId: "t", attempt: 1)
        let opened = broker.decision(try MatchDecision(match: match, sources: [device("b"), device("c")],
                                                       stripes: [[device("b"), device("c")], [device("c"), device("b")]]).frames())
        var receivers: [SessionOpen] = []
        for (open, destination) in try sent(LinkOpen.self, in: opened) {
            guard case .party(let relay) = destination else { throw TestFailure("\(destination)") }
            let ready = broker.control(try from(relay, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil, now: start)
            receivers += try sent(SessionOpen.self, in: ready).map(\.0).filter { $0.role == .receiver }
        }
        let (first, second) = (receivers[0], receivers[1])
        _ = broker.control(try from("a", SessionFinished(sessionId: first.sessionId, requestId: first.requestId, role: .receiver, outcome: .completed,
                                                         payloadBytes: 1)), peer: nil, now: start)
        let slower = broker.control(try from("a", SessionFinished(sessionId: second.sessionId, requestId: second.requestId, role: .receiver,
                                                                  outcome: .cancelled, payloadBytes: 1, reason: FinishReason.slowerStripe.rawValue)),
                                    peer: nil, now: start)
        let repathed = try #require(published(.sessionRepathed, in: slower).first)
        #expect(repathed.fields["sender"] == "b" && repathed.fields["previousSender"] == "c" && repathed.fields["reason"] == "slower-stripe")
        #expect(published(.sessionBrokered, in: slower).first?.fields["stripe"] == .object(["index": 1, "count": 2]))
        #expect(broker.counters[.sessionsReplanned] == 1 && broker.counters[.sessionsFailed] == nil)
    }

    @Test func aRelayThatFallsSilentGivesItsSessionsANewPathThroughAnother() throws {
        let start = ContinuousClock.now
        let broker = try broker(at: start)
        let opened = broker.decision(try decided("r-1", for: "a", sources: ["b"]))
        let (open, destination) = try #require(try sent(LinkOpen.self, in: opened).first)
        guard case .party(let first) = destination else { throw TestFailure("\(destination)") }
        let other = first == "r1" ? "r2" : "r1"
        _ = broker.control(try from(first, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil, now: start)
        // Everyone but the session's relay keeps beating.
        let later = start + .seconds(4)
        for name in ["a", "b", "c", other] { _ = broker.control(try from(name, Heartbeat(load: 0)), peer: nil, now: later) }
        let effects = broker.tick(now: start + .seconds(6))
        #expect(published(.relayLost, in: effects).first?.fields["relayId"] == .string(first))
        let repathed = try #require(published(.sessionRepathed, in: effects).first)
        #expect(repathed.fields["relayId"] == .string(other) && repathed.fields["sender"] == .string("b"))
        #expect(try sent(SessionCancel.self, in: effects).contains { $0.0.newPathFollows == true && "\($0.1)" == "party(\"a\")" })
        #expect(try sent(LinkOpen.self, in: effects).map { "\($0.1)" } == ["party(\"\(other)\")"])
    }

    /// A receiver that lost its relay connection gets a new path at once, avoiding the relay.
    /// Through a fleet relay the same sender stays; through the sender's own relay (gone with
    /// the sender's host, most likely) another source is tried first.
    @Test func aReceiverThatLostItsRelayGetsANewPathAtOnce() throws {
        let start = ContinuousClock.now
        let broker = try broker(at: start)
        _ = broker.control(try from("b", AgentHello(deviceId: device("b"), forwarder: try RelayID("b-fwd"))), peer: nil, now: start)
        _ = broker.control(try from("b-fwd", RelayHello(relayId: try RelayID("b-fwd"), endpoint: "tcp://b:7200", forwardsFor: device("b"))),
                           peer: nil, now: start)
        func lost(_ id: String, sources: [String]) throws -> [SessionBroker.Effect] {
            let opened = broker.decision(try decided(id, for: "a", sources: sources))
            let (open, destination) = try #require(try sent(LinkOpen.self, in: opened).first)
            guard case .party(let relay) = destination else { throw TestFailure("\(destination)") }
            _ = broker.control(try from(relay, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil, now: start)
            let finished = SessionFinished(sessionId: open.sessionId, requestId: try RequestID(id), role: .receiver, outcome: .failed,
                                           payloadBytes: 1000, reason: FinishReason.relayDisconnected.rawValue)
            return broker.control(try from("a", finished), peer: nil, now: start)
        }
        let throughOwn = try #require(published(.sessionRepathed, in: try lost("r-1", sources: ["b", "c"])).first)
        #expect(throughOwn.fields["previousRelayId"] == "b-fwd" && throughOwn.fields["sender"] == "c" && throughOwn.fields["relayId"] != "b-fwd")
        let throughFleet = try #require(published(.sessionRepathed, in: try lost("r-2", sources: ["c", "b"])).first)
        #expect(throughFleet.fields["sender"] == "c" && throughFleet.fields["relayId"] != throughFleet.fields["previousRelayId"])
    }

    /// The swarm plan moves a device: its running session gets a new path from the plan's
    /// sources, however many times (a re-plan is no broken path), and a change for a device
    /// with no session running changes nothing and is counted. Each time the matcher hears
    /// which source the device now has (`source.taken`): the plan follows what runs.
    @Test func aSourceChangeRePathsTheRunningSessionWithoutUsingUpItsRepaths() throws {
        let start = ContinuousClock.now
        let broker = try broker(at: start)
        var sender = "b"
        func taken(_ effects: [SessionBroker.Effect]) throws -> [String] {
            try sent(SourceTaken.self, in: effects).map { "\($0.0.deviceId)<-\($0.0.sender?.rawValue ?? "origin")@\($0.1)" }
        }
        let opened = broker.decision(try decided("r-1", for: "a", sources: ["x", sender]))
        #expect(try taken(opened) == ["a<-b@matcher"], "the first source listed is not connected: b sends")
        var (open, destination) = try #require(try sent(LinkOpen.self, in: opened).first)
        for round in 0...SessionBroker.maxRepaths {
            guard case .party(let relay) = destination else { throw TestFailure("\(destination)") }
            _ = broker.control(try from(relay, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil, now: start)
            let next = sender == "b" ? "c" : "b"
            let change = SourceChange(deviceId: device("a"), contentId: contentA, sources: [device(next)],
                                      reason: round == 0 ? .fellBehind : .upstreamMoved)
            let effects = broker.decision(try change.frames())
            let repathed = try #require(published(.sessionRepathed, in: effects).first, "round \(round)")
            #expect(repathed.fields["sender"] == .string(next) && repathed.fields["previousSender"] == .string(sender))
            #expect(repathed.fields["reason"] == .string(change.reason))
            #expect(try sent(SessionCancel.self, in: effects).contains { $0.0.newPathFollows == true && $0.1 == .party("a") })
            #expect(try sent(OriginDirective.self, in: effects).isEmpty, "round \(round): a re-plan is not a broken path")
            #expect(try taken(effects) == ["a<-\(next)@matcher"])
            (open, destination) = try #require(try sent(LinkOpen.self, in: effects).first)
            sender = next
        }
        #expect(broker.counters[.sessionsReplanned] == SessionBroker.maxRepaths + 1 && broker.counters[.sessionsFailed] == nil)
        // No sources: the origin serves the rest.
        guard case .party(let relay) = destination else { throw TestFailure("\(destination)") }
        _ = broker.control(try from(relay, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil, now: start)
        let toOrigin = broker.decision(try SourceChange(deviceId: device("a"), contentId: contentA, sources: [], reason: .upstreamMoved).frames())
        #expect(try sent(OriginDirective.self, in: toOrigin).map(\.1) == [.party("a")])
        #expect(try taken(toOrigin) == ["a<-origin@matcher"])
        // Nothing runs for c: nothing to change.
        let idle = broker.decision(try SourceChange(deviceId: device("c"), contentId: contentA, sources: [device("b")], reason: .slowUplink).frames())
        #expect(idle.isEmpty && broker.counters[.changesIdle] == 1)
        // c's session waits for its relay: it stays as it is, and the plan hears that it does.
        #expect(try taken(broker.decision(try decided("r-2", for: "c", sources: ["b"]))) == ["c<-b@matcher"])
        let waiting = broker.decision(try SourceChange(deviceId: device("c"), contentId: contentA, sources: [device("a")], reason: .slowUplink).frames())
        #expect(try taken(waiting) == ["c<-b@matcher"] && broker.counters[.changesIdle] == 2)
        #expect(try sent(LinkOpen.self, in: waiting).isEmpty)
        // A change the plan could not have made is dropped and said.
        var bad = SourceChange(deviceId: device("a"), contentId: contentA, sources: [device("b")], reason: .slowUplink)
        bad.reason = "because"
        let dropped = broker.decision(Envelope(kind: SourceChange.kind, body: try JSONCoding.encoder.encode(bad)).frames)
        #expect(published(.messageDropped, in: dropped).first?.fields["kind"] == .string(SourceChange.kind))
        #expect(broker.counters[.decisionsDropped] == 1)
    }

    @Test func corruptChunksGiveANewPathAvoidingTheSenderAndTheRelay() throws {
        let start = ContinuousClock.now
        let broker = try broker(at: start)
        let opened = broker.decision(try decided("r-1", for: "a", sources: ["b", "c"]))
        let (open, destination) = try #require(try sent(LinkOpen.self, in: opened).first)
        guard case .party(let first) = destination else { throw TestFailure("\(destination)") }
        _ = broker.control(try from(first, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil, now: start)
        let failed = SessionFinished(sessionId: open.sessionId, requestId: try RequestID("r-1"), role: .receiver, outcome: .failed,
                                     payloadBytes: 0, reason: "corrupt-chunks", rejectedChunks: 1, unopenedChunks: 1)
        let effects = broker.control(try from("a", failed), peer: nil, now: start)
        #expect(published(.sessionFailed, in: effects).contains { $0.fields["reason"] == "unopened-packets" })
        let repathed = try #require(published(.sessionRepathed, in: effects).first)
        #expect(repathed.fields["sender"] == "c" && repathed.fields["relayId"] != .string(first))
        // One failure convicts nobody: no ban, no eviction.
        #expect(published(.deviceBanned, in: effects).isEmpty && broker.evicted.isEmpty)
    }

    @Test func aWithdrawalGivesUpASessionStillWaitingForItsRelay() throws {
        let broker = try broker(at: .now)
        let opened = broker.decision(try decided("r-1", for: "a", sources: ["b"]))
        let (open, destination) = try #require(try sent(LinkOpen.self, in: opened).first)
        guard case .party(let relay) = destination else { throw TestFailure("\(destination)") }
        let effects = broker.decision(try ContentWithdrawn(contentId: contentA, reason: "gone").frames())
        #expect(published(.sessionFailed, in: effects).first?.fields["reason"] == "withdrawn")
        #expect(try sent(ContentWithdrawn.self, in: effects).count == 3)
        // Its relay's late word opens nothing.
        let late = broker.control(try from(relay, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil)
        #expect(try sent(SessionOpen.self, in: late).isEmpty)
        // Nor does a request that comes after.
        let after = broker.decision(try decided("r-2", for: "c", sources: ["b"]))
        #expect(try sent(LinkOpen.self, in: after).isEmpty)
        #expect(published(.sessionFailed, in: after).first?.fields["reason"] == "withdrawn")
    }

    @Test func aRelayThatCannotBeReachedSendsTheReceiverToTheOrigin() throws {
        let broker = try broker(relays: ["r1"], at: .now)
        let opened = broker.decision(try decided("r-1", for: "a", sources: ["b"]))
        let (open, _) = try #require(try sent(LinkOpen.self, in: opened).first)
        // The shell carries out an unsent message's consequence at once, before the effects after
        // it: the matcher hears of b before the link.open goes, so the origin is its last word.
        let kinds = opened.compactMap { if case .send(let frames, _, _) = $0 { String(decoding: frames[1], as: UTF8.self) } else { nil } }
        #expect(kinds.firstIndex(of: SourceTaken.kind)! < kinds.firstIndex(of: LinkOpen.kind)!, "\(kinds)")
        let effects = broker.unsent(.abandon(open.sessionId, reason: "relay-unreachable"))
        #expect(published(.sessionFailed, in: effects).first?.fields["reason"] == "relay-unreachable")
        let directive = try #require(try sent(OriginDirective.self, in: effects).first)
        #expect("\(directive.1)" == "party(\"a\")" && directive.0.reason == "relay-unreachable")
        #expect(try sent(SourceTaken.self, in: effects).map(\.0.sender) == [nil])
        #expect(broker.sessions.isEmpty && broker.pool.allocated == 0)
    }

    @Test func aHelloForAnotherIdOrFromARevokedDeviceIsRefused() throws {
        let broker = try broker(at: .now)
        let posing = broker.control(try from("a", AgentHello(deviceId: device("b"))), peer: nil)
        #expect(published(.messageDropped, in: posing).count == 1)
        #expect(try sent(Welcome.self, in: posing).isEmpty)
        let revoked = broker.decision(try DeviceRevocation(deviceId: device("c")).frames())
        #expect(revoked.contains(.forget("c")) && published(.deviceLost, in: revoked).count == 1)
        let again = broker.control(try from("c", AgentHello(deviceId: device("c"))), peer: nil)
        #expect(try sent(Welcome.self, in: again).isEmpty && published(.messageDropped, in: again).count == 1)
    }
}

extension SessionBrokerDecisions {
    @Test func aDrainingRelayGetsNoNewSessionsAndOnlyDrainingRelaysMeansTheOrigin() throws {
        let broker = try broker(at: .now)
        _ = broker.control(try from("r1", RelayDraining(relayId: try RelayID("r1"), sessions: 0, deadlineMilliseconds: 20_000)), peer: nil)
        for index in 1...4 {
            let opened = broker.decision(try decided("r-\(index)", for: "a", sources: ["b"]))
            #expect(try sent(LinkOpen.self, in: opened).map { "\($0.1)" } == ["party(\"r2\")"])
        }
        _ = broker.control(try from("r2", RelayDraining(relayId: try RelayID("r2"), sessions: 4, deadlineMilliseconds: 20_000)), peer: nil)
        let none = broker.decision(try decided("r-5", for: "a", sources: ["b"]))
        #expect(try sent(LinkOpen.self, in: none).isEmpty)
        #expect(try sent(OriginDirective.self, in: none).first?.0.reason == "no-relay")
    }

    @Test func aChunkThatOpenedButFailsItsHashBansTheSenderAtOnce() throws {
        let start = ContinuousClock.now
        let broker = try broker(at: start)
        let opened = broker.decision(try decided("r-1", for: "a", sources: ["b", "c"]))
        let (open, destination) = try #require(try sent(LinkOpen.self, in: opened).first)
        guard case .party(let relay) = destination else { throw TestFailure("\(destination)") }
        _ = broker.control(try from(relay, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil, now: start)
        // Bytes that opened under the content key could only come from a key holder.
        let failed = SessionFinished(sessionId: open.sessionId, requestId: try RequestID("r-1"), role: .receiver, outcome: .failed,
                                     payloadBytes: 0, reason: "corrupt-chunks", rejectedChunks: 1, unopenedChunks: 0)
        let effects = broker.control(try from("a", failed), peer: nil, now: start)
        #expect(published(.deviceBanned, in: effects).first?.fields["deviceId"] == "b")
        #expect(published(.deviceBanned, in: effects).first?.fields["cause"] == "hash")
        #expect(published(.sessionRepathed, in: effects).first?.fields["sender"] == "c")
        // Never chosen to send that content again, even when it is the only holder offered.
        let later = broker.decision(try decided("r-2", for: "c", sources: ["b"]))
        #expect(try sent(OriginDirective.self, in: later).first?.0.reason == "every-holder-banned")
    }

    @Test func aReceiverThatStopsBeatingEndsItsSessions() throws {
        let start = ContinuousClock.now
        let broker = try broker(at: start)
        let opened = broker.decision(try decided("r-1", for: "a", sources: ["b"]))
        let (open, destination) = try #require(try sent(LinkOpen.self, in: opened).first)
        guard case .party(let relay) = destination else { throw TestFailure("\(destination)") }
        _ = broker.control(try from(relay, LinkReady(sessionId: open.sessionId, address: open.address)), peer: nil, now: start)
        let later = start + .seconds(4)
        for name in ["b", "c", "r1", "r2"] { _ = broker.control(try from(name, Heartbeat(load: 0)), peer: nil, now: later) }
        let effects = broker.tick(now: start + .seconds(6))
        #expect(published(.deviceLost, in: effects).map { $0.fields["deviceId"] } == ["a"])
        #expect(published(.sessionFailed, in: effects).first?.fields["reason"] == "receiver-lost")
        #expect(Set(try sent(SessionCancel.self, in: effects).map { "\($0.1)" }) == ["party(\"b\")", "party(\"\(relay)\")"])
        #expect(broker.sessions.isEmpty && broker.pool.allocated == 0)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
