import FerryBroker
import FerryIntake
import FerryMatcher
import FerryProtocol
import FerryReporter
import FerryService
import Foundation
import Testing

let contentA = try! ContentID(String(repeating: "a1", count: 32))
let contentB = try! ContentID(String(repeating: "b2", count: 32))
let summaryA = ContentSummary(contentId: contentA, size: 1 << 20, chunkSize: 262_144, packetSize: 65_536)

func device(_ name: String) -> DeviceID { try! DeviceID(name) }

func request(_ id: String, from deviceName: String, content: ContentSummary = summaryA) -> DownloadRequest {
    DownloadRequest(requestId: try! RequestID(id), deviceId: device(deviceName), content: content, server: "http://127.0.0.1:7080")
}

func announcement(_ name: String, holds: [ContentID], sequence: UInt64 = 1, uploads: Int = 0, serving: Bool = true,
                  zone: String? = nil) -> HoldingsAnnouncement {
    HoldingsAnnouncement(deviceId: device(name), sequence: sequence, contents: holds, serving: serving, activeUploads: uploads,
                         zone: zone, intervalMilliseconds: 1000)
}

@Suite struct PeerMatching {
    @Test func nobodyHoldsItSoTheOriginServes() {
        #expect(PeerSelection.decide(for: request("r", from: "a"), index: HoldingsIndex()) == .origin(reason: "no-holder"))
    }

    @Test func theRequesterIsNeverItsOwnSource() {
        var index = HoldingsIndex()
        index.apply(announcement("a", holds: [contentA]))
        #expect(PeerSelection.decide(for: request("r", from: "a"), index: index) == .origin(reason: "only-requester-holds"))
    }

    /// Hole 5: a device that announces everything and then sends nothing was chosen first every
    /// time. After `SenderSilent.limit` silent sessions it is passed over for a while.
    @Test func aSenderSilentThreeTimesIsPassedOverForAWhile() {
        var index = HoldingsIndex()
        let now = ContinuousClock.now
        index.apply(announcement("a-silent", holds: [contentA]), now: now)
        index.apply(announcement("b", holds: [contentA], uploads: 1), now: now)
        #expect(PeerSelection.decide(for: request("r", from: "z"), index: index, now: now) == .peers([device("a-silent"), device("b")]))
        let verdicts = (1...SenderSilent.limit).map { _ in index.noteSilent(device("a-silent"), now: now) }
        #expect(verdicts == [false, false, true])
        #expect(PeerSelection.decide(for: request("r", from: "z"), index: index, now: now) == .peers([device("b")]))
        // With it the only holder, the origin serves, and says why.
        var alone = HoldingsIndex()
        alone.apply(announcement("a-silent", holds: [contentA]), now: now)
        for _ in 1...SenderSilent.limit { _ = alone.noteSilent(device("a-silent"), now: now) }
        #expect(PeerSelection.decide(for: request("r", from: "z"), index: alone, now: now) == .origin(reason: "every-holder-silent"))
        // It is chosen again once its time is served.
        let later = now + .milliseconds(SenderSilent.exclusionMilliseconds + 1)
        index.apply(announcement("a-silent", holds: [contentA], sequence: 2), now: later)
        index.apply(announcement("b", holds: [contentA], sequence: 2, uploads: 1), now: later)
        #expect(PeerSelection.decide(for: request("r", from: "z"), index: index, now: later) == .peers([device("a-silent"), device("b")]))
    }

    @Test func leastLoadedServingHolderWins() {
        var index = HoldingsIndex()
        index.apply(announcement("b", holds: [contentA], uploads: 2))
        index.apply(announcement("c", holds: [contentA], uploads: 0))
        index.apply(announcement("d", holds: [contentA], uploads: 0, serving: false))
        index.apply(announcement("e", holds: [contentB]))
        #expect(PeerSelection.decide(for: request("r", from: "a"), index: index) == .peers([device("c"), device("b")]))
    }

    @Test func assignmentsSpreadABurstBetweenAnnouncements() {
        var index = HoldingsIndex()
        index.apply(announcement("b", holds: [contentA]))
        index.apply(announcement("c", holds: [contentA]))
        var chosen: [DeviceID] = []
        for i in 0..<4 {
            guard case .peers(let sources) = PeerSelection.decide(for: request("r\(i)", from: "a"), index: index) else {
                Issue.record("no peer chosen")
                return
            }
            chosen.append(sources[0])
            index.noteAssigned(sources[0])
        }
        #expect(chosen.filter { $0 == device("b") }.count == 2)
        #expect(chosen.filter { $0 == device("c") }.count == 2)
    }

    /// An announcement sent before the sessions it was just handed started counts none of them:
    /// they still count until they have had time to start, so a burst doesn't land twice on the
    /// holder that was free (the crowd tests' "holder feeds two devices").
    @Test func anAnnouncementInTheMiddleOfABurstKeepsItsAssignments() {
        var index = HoldingsIndex()
        let start = ContinuousClock.now
        index.apply(announcement("b", holds: [contentA], sequence: 1), now: start)
        index.apply(announcement("c", holds: [contentA], sequence: 1), now: start)
        #expect(PeerSelection.decide(for: request("r1", from: "a"), index: index, now: start) == .peers([device("b"), device("c")]))
        index.noteAssigned(device("b"), now: start)
        index.apply(announcement("b", holds: [contentA], sequence: 2), now: start + .milliseconds(300))
        #expect(PeerSelection.decide(for: request("r2", from: "d"), index: index, now: start + .milliseconds(300)) == .peers([device("c"), device("b")]))
        // Once it has had time to start, the holder's own count is the one that holds.
        index.apply(announcement("b", holds: [contentA], sequence: 3, uploads: 1), now: start + .seconds(3))
        #expect(index.holders[device("b")]?.load == 1)
    }

    @Test func zoneBreaksTies() {
        var index = HoldingsIndex()
        index.apply(announcement("b", holds: [contentA], zone: "us"))
        index.apply(announcement("c", holds: [contentA], zone: "eu"))
        #expect(PeerSelection.decide(for: request("r", from: "a"), requesterZone: "eu", index: index) == .peers([device("c"), device("b")]))
    }

    @Test func withdrawnContentHasNoHoldersWhateverIsAnnounced() {
        var index = HoldingsIndex()
        index.apply(announcement("b", holds: [contentA, contentB]))
        index.withdraw(contentA)
        #expect(PeerSelection.decide(for: request("r", from: "a"), index: index) == .origin(reason: "no-holder"))
        index.apply(announcement("c", holds: [contentA]))
        #expect(index.holders(of: contentA).isEmpty)
        #expect(index.holders(of: contentB).count == 1)
    }

    @Test func silentDevicesExpireAndStaleAnnouncementsAreIgnored() {
        var index = HoldingsIndex()
        let start = ContinuousClock.now
        index.apply(announcement("b", holds: [contentA], sequence: 5), now: start)
        let staleApplied = index.apply(announcement("b", holds: [], sequence: 4), now: start)
        #expect(staleApplied == .stale)
        let same = index.apply(announcement("b", holds: [contentA], sequence: 6), now: start)
        #expect(same == .unchanged)
        #expect(index.holders(of: contentA).count == 1)
        let early = index.expire(now: start + .milliseconds(2500))
        #expect(early.isEmpty)
        let late = index.expire(now: start + .milliseconds(3100))
        #expect(late == [device("b")])
        #expect(PeerSelection.decide(for: request("r", from: "a"), index: index) == .origin(reason: "no-holder"))
    }
}

@Suite struct RequestIds {
    @Test func aRetryIsTheSameRequest() {
        var registry = RequestRegistry()
        guard case .new(let trace) = registry.admit(request("r1", from: "a")) else { Issue.record("first sight not new"); return }
        #expect(registry.admit(request("r1", from: "a")) == .retry(traceId: trace, attempt: 2))
        #expect(registry.admit(request("r1", from: "a")) == .retry(traceId: trace, attempt: 3))
    }

    @Test func theSameIdForOtherContentIsAConflict() {
        var registry = RequestRegistry()
        _ = registry.admit(request("r1", from: "a"))
        guard case .conflict = registry.admit(request("r1", from: "b")) else { Issue.record("conflict not detected"); return }
    }

    @Test func memoryIsBounded() {
        var registry = RequestRegistry(capacity: 100)
        for i in 0..<1000 { _ = registry.admit(request("r\(i)", from: "a")) }
        #expect(registry.count == 100)
        guard case .retry = registry.admit(request("r999", from: "a")) else { Issue.record("recent id forgotten"); return }
    }
}

@Suite struct OverlayAddresses {
    @Test func allocatesUniqueAddressesInsideTheBlock() throws {
        var pool = try AddressPool(cidr: "100.96.0.0/29")
        #expect(pool.capacity == 6)
        var seen = Set<String>()
        for _ in 0..<6 {
            let address = pool.allocate()
            seen.insert(try #require(address))
        }
        #expect(seen.count == 6)
        #expect(!seen.contains("100.96.0.0") && !seen.contains("100.96.0.7"))
        let exhausted = pool.allocate()
        #expect(exhausted == nil)
        pool.release("100.96.0.3")
        let reused = pool.allocate()
        #expect(reused == "100.96.0.3")
    }

    @Test func refusesBadBlocks() {
        for cidr in ["100.96.0.0", "100.96.0.0/31", "300.1.1.1/12", "nonsense/8"] {
            #expect(throws: AddressPoolError.self) { try AddressPool(cidr: cidr) }
        }
    }
}

@Suite struct ControlEndpoints {
    @Test func onlyLocalEndpointsCountAsLocal() {
        for local in ["ipc:///run/ferry/agent.sock", "tcp://127.0.0.1:7400", "tcp://localhost:7400", "tcp://[::1]:7400"] {
            #expect(isLocalOnly(local), "\(local)")
        }
        for remote in ["tcp://0.0.0.0:7400", "tcp://*:7400", "tcp://10.1.2.3:7400", "tcp://example.com:7400", "udp://127.0.0.1:1"] {
            #expect(!isLocalOnly(remote), "\(remote)")
        }
    }
}

@Suite struct RelayChoice {
    @Test func leastLoadedLiveRelay() throws {
        var relays = RelayDirectory()
        let now = ContinuousClock.now
        relays.register(try RelayID("r1"), endpoint: "tcp://a:1", zone: nil, now: now)
        relays.register(try RelayID("r2"), endpoint: "tcp://b:1", zone: nil, now: now)
        #expect(relays.choose()?.id == (try RelayID("r1")))
        relays.adjustSessions(try RelayID("r1"), by: 1)
        #expect(relays.choose()?.id == (try RelayID("r2")))
        let lost = relays.expire(silentFor: .seconds(5), now: now + .seconds(6))
        #expect(lost.count == 2)
        #expect(relays.choose() == nil)
    }

    /// A device that opted in to forwarding sends through the relay on its own host, which its
    /// uplink pays for anyway; nobody else's sessions ever go through that relay, and a relay
    /// that says it forwards for a device is used only if the device named it too.
    @Test func aForwardingDeviceSendsThroughItsOwnRelayAndOnlyIt() throws {
        var relays = RelayDirectory()
        let fleet = try RelayID("r-fleet"), own = try RelayID("a-fwd"), stranger = try RelayID("b-fwd")
        relays.register(fleet, endpoint: "tcp://s:1", zone: nil)
        relays.register(own, endpoint: "tcp://a:1", zone: nil, forwardsFor: device("a"))
        relays.register(stranger, endpoint: "tcp://b:1", zone: nil, forwardsFor: device("b"))
        relays.adjustSessions(fleet, by: 5)
        #expect(relays.choose(sender: device("a"), forwarder: own)?.id == own)
        // Busier than any forwarding relay, the fleet relay is still the only one for others.
        #expect(relays.choose(sender: device("c"), forwarder: nil)?.id == fleet)
        #expect(relays.choose(sender: device("c"), forwarder: own)?.id == fleet, "c named a relay that forwards for a")
        // Avoided after a broken path, or draining: the fleet's relays.
        #expect(relays.choose(excluding: [own], sender: device("a"), forwarder: own)?.id == fleet)
        relays.markDraining(own)
        #expect(relays.choose(sender: device("a"), forwarder: own)?.id == fleet)
    }
}

@Suite struct FulfilmentChecks {
    let session = SessionID(99)
    let sender = device("b")

    func completion(peer: UInt64, origin: UInt64, from peerDevice: String = "b") -> Completion {
        var sources: [SourceBytes] = []
        if peer > 0 { sources.append(SourceBytes(kind: .peer, device: device(peerDevice), sessionId: session, bytes: peer)) }
        if origin > 0 { sources.append(SourceBytes(kind: .origin, bytes: origin)) }
        return Completion(requestId: try! RequestID("r"), deviceId: device("a"), contentId: contentA, size: peer + origin,
                          sources: sources, startedAt: "s", finishedAt: "f")
    }

    enum State { case open, closed }

    func record(_ state: State, relayBytes: UInt64?) -> RequestRecord {
        RequestRecord(requestId: try! RequestID("r"), deviceId: device("a"), contentId: contentA, server: "http://origin",
                      sessions: [SessionRecord(sessionId: session, sender: sender, relays: [try! RelayID("relay")], closed: state == .closed,
                                               relayPayloadBytes: relayBytes)])
    }

    @Test func matchedWhenTheRelayCarriedWhatTheDeviceClaims() {
        guard case .record(let fulfilment, let server) = FulfilmentCheck.evaluate(completion(peer: 1000, origin: 24), record: record(.closed, relayBytes: 1000), waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(fulfilment.verification == .matched)
        #expect(fulfilment.bytesFromPeers == 1000 && fulfilment.bytesFromOrigin == 24)
        #expect(server == "http://origin")  // the broker's record names the server, not the device
    }

    @Test func inflatedClaimsAreCappedAtTheRelayCount() {
        guard case .record(let fulfilment, _) = FulfilmentCheck.evaluate(completion(peer: 5000, origin: 0), record: record(.closed, relayBytes: 1000), waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(fulfilment.verification == .capped)
        #expect(fulfilment.bytesFromPeers == 1000)
    }

    /// Hole 6: the sender's, the relay's and the receiver's counts are held against each other
    /// before a fulfilment is `matched`. A relay that says it forwarded more than the sender sent
    /// (with a receiver claiming as much) is not believed.
    @Test func aRelayCountingMoreThanTheSenderSentIsNotBelieved() {
        var inflated = record(.closed, relayBytes: 5000)
        inflated.sessions[0].senderPayloadBytes = 1000
        guard case .record(let fulfilment, _) = FulfilmentCheck.evaluate(completion(peer: 5000, origin: 0), record: inflated, waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(fulfilment.verification == .capped)
        #expect(fulfilment.bytesFromPeers == 1000)
        // All three agreeing is a match.
        var agreed = record(.closed, relayBytes: 1000)
        agreed.sessions[0].senderPayloadBytes = 1000
        guard case .record(let matched, _) = FulfilmentCheck.evaluate(completion(peer: 1000, origin: 0), record: agreed, waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(matched.verification == .matched)
    }

    /// docs/security.md, "devices that forward": through the sender's own forwarding relay the
    /// relay's count is the sender's word, so a sender could vouch for a friend's claim. Such
    /// sessions are credited no more than the counts say, and never `matched`.
    @Test func theSendersOwnRelayWitnessesNothingBeyondTheSendersWord() {
        var forwarded = record(.closed, relayBytes: 1000)
        forwarded.sessions[0].senderPayloadBytes = 1000
        forwarded.sessions[0].forwardedBySender = true
        guard case .record(let fulfilment, _) = FulfilmentCheck.evaluate(completion(peer: 1000, origin: 0), record: forwarded, waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(fulfilment.verification == .unverified && fulfilment.bytesFromPeers == 1000)
        guard case .record(let inflated, _) = FulfilmentCheck.evaluate(completion(peer: 5000, origin: 0), record: forwarded, waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(inflated.verification == .capped && inflated.bytesFromPeers == 1000)
    }

    @Test func creditGoesOnlyToTheBrokeredSender() {
        guard case .record(let fulfilment, _) = FulfilmentCheck.evaluate(completion(peer: 1000, origin: 0, from: "mallory"), record: record(.closed, relayBytes: 1000), waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(fulfilment.verification == .capped)
        #expect(fulfilment.bytesFromPeers == 0)
    }

    @Test func waitsForTheClosingRecordThenRecordsUnverified() {
        #expect(FulfilmentCheck.evaluate(completion(peer: 10, origin: 0), record: record(.open, relayBytes: nil), waitedLongEnough: false) == .wait)
        #expect(FulfilmentCheck.evaluate(completion(peer: 10, origin: 0), record: nil, waitedLongEnough: false) == .wait)
        guard case .record(let late, let server) = FulfilmentCheck.evaluate(completion(peer: 10, origin: 0), record: record(.open, relayBytes: nil), waitedLongEnough: true) else {
            Issue.record("not recorded"); return
        }
        #expect(late.verification == .unverified)
        #expect(server == "http://origin")
        // Without any record from the broker there is no trustworthy server to deliver to.
        guard case .reject = FulfilmentCheck.evaluate(completion(peer: 10, origin: 0), record: nil, waitedLongEnough: true) else {
            Issue.record("a completion nobody brokered was recorded"); return
        }
    }

    @Test func originOnlyRequestsCreditNoPeer() {
        let originRecord = RequestRecord(requestId: try! RequestID("r"), deviceId: device("a"), contentId: contentA, server: "http://origin")
        guard case .record(let fulfilment, _) = FulfilmentCheck.evaluate(completion(peer: 0, origin: 1024), record: originRecord, waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(fulfilment.verification == .originOnly)
        #expect(fulfilment.bytesFromOrigin == 1024 && fulfilment.bytesFromPeers == 0)
    }

    /// A relay killed mid-transfer: the first session's count died with it, so the sender's
    /// count caps it and the whole is unverified; the second session is checked as usual.
    @Test func aRequestServedByTwoSessionsIsCheckedSessionBySession() {
        let second = SessionID(100), other = device("c")
        let completion = Completion(requestId: try! RequestID("r"), deviceId: device("a"), contentId: contentA, size: 3000,
                                    sources: [SourceBytes(kind: .peer, device: sender, sessionId: session, bytes: 1200),
                                              SourceBytes(kind: .peer, device: other, sessionId: second, bytes: 1500),
                                              SourceBytes(kind: .origin, bytes: 300)],
                                    startedAt: "s", finishedAt: "f")
        func sessions(firstClosed: Bool, senderCount: UInt64?, secondRelay: UInt64) -> RequestRecord {
            RequestRecord(requestId: try! RequestID("r"), deviceId: device("a"), contentId: contentA, server: "http://origin", sessions: [
                SessionRecord(sessionId: session, sender: sender, relays: [try! RelayID("r1")], closed: firstClosed, senderPayloadBytes: senderCount),
                SessionRecord(sessionId: second, sender: other, relays: [try! RelayID("r2")], closed: true, relayPayloadBytes: secondRelay),
            ])
        }
        #expect(FulfilmentCheck.evaluate(completion, record: sessions(firstClosed: false, senderCount: nil, secondRelay: 1500), waitedLongEnough: false) == .wait)
        guard case .record(let honest, _) = FulfilmentCheck.evaluate(completion, record: sessions(firstClosed: true, senderCount: 1300, secondRelay: 1500), waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(honest.verification == .unverified)
        #expect(honest.bytesFromPeers == 2700 && honest.bytesFromOrigin == 300)
        #expect(honest.sources.map(\.sessionId) == [session, second, nil])
        guard case .record(let inflated, _) = FulfilmentCheck.evaluate(completion, record: sessions(firstClosed: true, senderCount: 1000, secondRelay: 900), waitedLongEnough: false) else {
            Issue.record("not recorded"); return
        }
        #expect(inflated.verification == .capped)
        #expect(inflated.bytesFromPeers == 1900)
    }

    @Test func aCompletionForAnotherDeviceIsRejected() {
        var other = record(.closed, relayBytes: 10)
        other.deviceId = device("z")
        guard case .reject = FulfilmentCheck.evaluate(completion(peer: 10, origin: 0), record: other, waitedLongEnough: true) else {
            Issue.record("not rejected"); return
        }
    }
}
