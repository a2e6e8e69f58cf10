@testable import FerryAgent
import FerryProtocol
import FerryService
import Foundation
import Testing

/// The receiving device's decisions without a socket or a file: plans, link reports, origin
/// notes and ticks in; what it would open, close, fetch, tell the broker and publish out.
@Suite struct DownloadsDecisions {
    let device = try! DeviceID("dev-a")
    let content = try! ContentID(String(repeating: "c", count: 64))
    var summary: ContentSummary { ContentSummary(contentId: content, size: 4 << 20, chunkSize: 1 << 20, packetSize: 16 << 10) }
    let client = Waiter.client

    enum Waiter {
        static let client = Downloads.Waiter(client: Data("cli".utf8), output: nil)
    }

    func downloads() -> Downloads { Downloads(deviceId: device, planWaitMilliseconds: 3000, heartbeat: .milliseconds(100)) }

    func open(_ session: UInt64, request: RequestID, layout: ContentSummary? = nil, stripe: Stripe? = nil, from peer: String = "dev-b") throws -> SessionOpen {
        SessionOpen(sessionId: SessionID(session), requestId: request, traceId: "t", role: .receiver, content: layout ?? summary,
                    address: "100.96.0.1", peerAddress: "100.96.0.2", peerDevice: try DeviceID(peer), relayEndpoint: "tcp://r:7200",
                    relays: [try RelayID("r1")], window: 32, stripe: stripe)
    }

    /// The download's one leg awaits a new path for the whole content.
    func expectAwaitingNewPath(_ downloads: Downloads, _ requestId: RequestID) throws {
        guard case .receiving(_, let legs)? = downloads.all[requestId]?.stage, legs.count == 1, case .awaiting(nil, _) = legs[0] else {
            throw TestFailure("\(String(describing: downloads.all[requestId]?.stage))")
        }
    }

    func told(_ effects: [Downloads.Effect]) -> [SessionFinished] {
        effects.compactMap { if case .tellBroker(let finished) = $0 { finished } else { nil } }
    }

    func published(_ topic: EventTopic, in effects: [Downloads.Effect]) -> [Publication] {
        effects.compactMap { if case .publish(let publication) = $0, publication.topic == topic { publication } else { nil } }
    }

    /// A download asked for locally and prepared (manifest and key in hand, nothing held).
    func preparedDownload(_ downloads: Downloads) throws -> RequestID {
        let started = downloads.get(content, for: client)
        guard case .prepare(let requestId, content, placeRequest: true) = try #require(started.first) else {
            throw TestFailure("a get starts with preparing: \(started)")
        }
        #expect(downloads.prepared(requestId, summary, localBytes: 0, complete: false).isEmpty)
        return requestId
    }

    @Test func aSecondGetJoinsTheRunningDownload() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        #expect(downloads.get(content, for: Downloads.Waiter(client: Data("other".utf8), output: "/x")).isEmpty)
        #expect(downloads.all[requestId]?.waiters.count == 2)
    }

    /// A session offered before the manifest came waits, then opens once the download is prepared.
    @Test func plansThatComeEarlyWaitForTheManifest() throws {
        let downloads = downloads()
        let requestId = try RequestID("pushed")
        let offered = try open(1, request: requestId)
        let first = downloads.plan(.session(offered), requestId: requestId, contentId: content, held: false)
        #expect(first == [.prepare(requestId, content, placeRequest: false)], "a request this device didn't make is prepared, not placed")
        let ready = downloads.prepared(requestId, summary, localBytes: 0, complete: false)
        #expect(ready == [.openLink(requestId, offered)])
        let opened = downloads.linkOpened(offered.sessionId, wantChunks: 4, complete: false)
        #expect(published(.transferStarted, in: opened).first?.fields["wantChunks"] == 4)
        #expect(downloads.all[requestId]?.source == "peer:dev-b via r1")
    }

    @Test func aSessionForContentAlreadyHeldOrNotNeededIsDeclined() throws {
        let downloads = downloads()
        let elsewhere = try RequestID("held")
        let held = told(downloads.plan(.session(try open(1, request: elsewhere)), requestId: elsewhere, contentId: content, held: true))
        #expect(held.map(\.reason) == ["already-held"] && held.first?.outcome == .cancelled)
        #expect(downloads.all.isEmpty)

        let requestId = try preparedDownload(downloads)
        _ = downloads.plan(.origin(OriginDirective(requestId: requestId, traceId: "t", content: summary, reason: "no-holder")),
                           requestId: requestId, contentId: content, held: false)
        let late = told(downloads.plan(.session(try open(2, request: requestId)), requestId: requestId, contentId: content, held: false))
        #expect(late.map(\.reason) == ["not-needed"], "the origin already serves it")
    }

    @Test func aSessionInAnotherLayoutIsRefusedAndTheOriginServes() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        let other = ContentSummary(contentId: content, size: 4 << 20, chunkSize: 1 << 20, packetSize: 8 << 10)
        let effects = downloads.plan(.session(try open(1, request: requestId, layout: other)), requestId: requestId, contentId: content, held: false)
        #expect(told(effects).map(\.reason) == ["layout-mismatch"])
        #expect(effects.contains(.count(.sessionsRefusedLayoutMismatch)))
        #expect(effects.last == .fetchFromOrigin(requestId))
        #expect(downloads.originStarted(requestId, wantChunks: 4).count == 1)
    }

    /// A corrupt chunk ends the session with the counts the broker blames by, and the download
    /// waits for a new path, resuming on it; past the wait, the origin.
    @Test func aCorruptChunkAwaitsANewPathThenResumes() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        let first = try open(1, request: requestId)
        _ = downloads.plan(.session(first), requestId: requestId, contentId: content, held: false)
        _ = downloads.linkOpened(first.sessionId, wantChunks: 4, complete: false)
        let tally = Downloads.LinkTally(verifiedBytes: 1 << 20, payloadBytes: 2 << 20, rejectedChunks: 1, unopenedChunks: 0)
        let effects = downloads.received(first.sessionId, tally, [.chunkVerified, .chunkRejected(1)], settled: false, complete: false)
        #expect(effects.contains(.closeLink(first.sessionId, abort: "corrupt-chunks")))
        let finished = try #require(told(effects).first)
        #expect(finished.outcome == .failed && finished.rejectedChunks == 1 && finished.unopenedChunks == 0 && finished.payloadBytes == 1 << 20)
        #expect(published(.transferChunkRejected, in: effects).first?.fields["cause"] == "hash")
        try expectAwaitingNewPath(downloads, requestId)
        #expect(downloads.all[requestId]?.peerSources.map(\.bytes) == [1 << 20], "what the session verified counts as that peer's")

        let second = try open(2, request: requestId)
        #expect(downloads.plan(.session(second), requestId: requestId, contentId: content, held: false) == [.openLink(requestId, second)])
        _ = downloads.linkOpened(second.sessionId, wantChunks: 3, complete: false)
        let done = downloads.received(second.sessionId, Downloads.LinkTally(verifiedBytes: 3 << 20, payloadBytes: 3 << 20), [.chunkVerified],
                                      settled: true, complete: true)
        #expect(done.contains(.closeLink(second.sessionId, abort: nil)) && done.last == .finalize(requestId))
        let completed = downloads.finalized(requestId, path: "/store/c")
        guard case .completed(let summary) = completed.last else { throw TestFailure("\(completed)") }
        #expect(summary.peerBytes == 4 << 20 && summary.originBytes == 0 && summary.waiters == [client])
        #expect(completed.contains(.count(.downloadsCompleted)) && downloads.all.isEmpty)

        // Nobody offers a new path in time: the origin serves the rest.
        let waiting = self.downloads()
        let other = try preparedDownload(waiting)
        _ = waiting.plan(.session(try open(3, request: other)), requestId: other, contentId: content, held: false)
        _ = waiting.linkStalled(SessionID(3), silent: true)
        #expect(!waiting.tick(now: .now + .milliseconds(500)).contains(.fetchFromOrigin(other)), "ten heartbeats to find a new path")
        #expect(waiting.tick(now: .now + .seconds(2)).contains(.fetchFromOrigin(other)))
    }

    /// The relay's connection dropped (its host died): the session ends at once, the broker is
    /// told why, and the download waits for the new path instead of turning to the origin.
    @Test func aDroppedRelayConnectionAsksForANewPathAtOnce() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        _ = downloads.plan(.session(try open(1, request: requestId)), requestId: requestId, contentId: content, held: false)
        let effects = downloads.relayDisconnected(SessionID(1))
        #expect(effects.contains(.closeLink(SessionID(1), abort: "relay-disconnected")) && !effects.contains(.fetchFromOrigin(requestId)))
        #expect(told(effects).map(\.reason) == ["relay-disconnected"] && told(effects).map(\.outcome) == [.failed])
        try expectAwaitingNewPath(downloads, requestId)
    }

    @Test func anOriginDirectiveWhileReceivingEndsTheSessionFirst() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        _ = downloads.plan(.session(try open(1, request: requestId)), requestId: requestId, contentId: content, held: false)
        let effects = downloads.plan(.origin(OriginDirective(requestId: requestId, traceId: "t", content: summary, reason: "relay-lost")),
                                     requestId: requestId, contentId: content, held: false)
        #expect(effects.first == .closeLink(SessionID(1), abort: "origin-directed: relay-lost"))
        #expect(told(effects).map(\.outcome) == [.cancelled])
        #expect(effects.last == .fetchFromOrigin(requestId))
        #expect(downloads.originFinished(requestId, error: nil, complete: true).last == .finalize(requestId))
    }

    @Test func noPlanInTimeMeansTheOriginAndANonFatalFailureRetries() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        let start = try #require(downloads.all[requestId]?.startClock)
        #expect(downloads.tick(now: start + .seconds(1)).allSatisfy { if case .fetchFromOrigin = $0 { false } else { true } })
        #expect(downloads.tick(now: start + .seconds(4)).contains(.fetchFromOrigin(requestId)))

        let retrying = Downloads(deviceId: device, planWaitMilliseconds: 60_000, heartbeat: .milliseconds(100))
        let other = try preparedDownload(retrying)
        let otherStart = try #require(retrying.all[other]?.startClock)
        #expect(retrying.tick(now: otherStart + .seconds(6)).contains(.prepare(other, content, placeRequest: true)), "the same request id again")
        #expect(retrying.requestFailed(other, reason: "503", fatal: false) == [.fetchFromOrigin(other)])
    }

    /// A failure answers every waiter, declines the sessions parked before the manifest, and
    /// publishes why; a fatal refusal before the manifest fails at once.
    @Test func aFailedDownloadDeclinesWhatWaitedAndAnswersItsClients() throws {
        let downloads = downloads()
        let requestId = try RequestID("r")
        _ = downloads.get(content, for: client)
        let mine = try #require(downloads.all.keys.first)
        _ = downloads.plan(.session(try open(5, request: mine)), requestId: mine, contentId: content, held: false)
        let effects = downloads.requestFailed(mine, reason: "unknown-content", fatal: true)
        #expect(told(effects).map(\.reason) == ["unknown-content"])
        #expect(effects.contains(.reply(client.client, GetResult(requestId: mine, contentId: content, ok: false, error: "unknown-content",
                                                                path: nil, sources: [], seconds: 0))))
        #expect(published(.transferFailed, in: effects).first?.fields["reason"] == "unknown-content")
        #expect(!effects.contains(.abandon(mine)), "nothing was prepared to save")
        #expect(downloads.all.isEmpty)
        #expect(downloads.requestFailed(requestId, reason: "x", fatal: true).isEmpty, "an unknown request")

        let withdrawn = try preparedDownload(downloads)
        _ = downloads.plan(.session(try open(6, request: withdrawn)), requestId: withdrawn, contentId: content, held: false)
        let gone = downloads.withdrawn(content, reason: "recalled")
        #expect(gone.contains(.closeLink(SessionID(6), abort: "withdrawn: recalled")) && gone.contains(.abandon(withdrawn)))
        #expect(told(gone).map(\.outcome) == [.failed])
    }

    @Test func theBrokersCancelEndsOnlyItsSession() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        _ = downloads.plan(.session(try open(9, request: requestId)), requestId: requestId, contentId: content, held: false)
        #expect(downloads.cancelled(SessionCancel(sessionId: SessionID(10), reason: "other")).isEmpty)
        let effects = downloads.cancelled(SessionCancel(sessionId: SessionID(9), reason: "relay-lost", newPathFollows: true))
        #expect(effects.first == .closeLink(SessionID(9), abort: "relay-lost") && !effects.contains(.fetchFromOrigin(requestId)))
        #expect(published(.linkClosed, in: effects).first?.fields["awaitingNewPath"] == .bool(true))
    }

    @Test func progressReachesWaitersAndMilestonesArePublished() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        _ = downloads.plan(.origin(OriginDirective(requestId: requestId, traceId: "t", content: summary, reason: "no-holder")),
                           requestId: requestId, contentId: content, held: false)
        let half = downloads.originChunks(requestId, bytes: 2 << 20)
        #expect(published(.transferProgress, in: half).first?.fields["receivedBytes"] == JSONValue(UInt64(2 << 20)))
        let start = try #require(downloads.all[requestId]?.startClock)
        let ticked = downloads.tick(now: start + .seconds(2))
        #expect(ticked.contains(.saveProgress(requestId)))
        #expect(ticked.contains(.progress(client.client, GetProgress(requestId: requestId, receivedBytes: 2 << 20, totalBytes: 4 << 20, source: "origin"))))
    }

    /// Two devices send at once, a stripe each: each stripe's session opens as it comes, a
    /// second session for a stripe already served is declined, the first stripe done waits for
    /// the other, and the download is whole with each peer credited its own bytes.
    @Test func aStripedRequestTakesEachStripeFromItsOwnSession() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        let first = try open(1, request: requestId, stripe: Stripe(0, of: 2), from: "dev-b")
        let second = try open(2, request: requestId, stripe: Stripe(1, of: 2), from: "dev-c")
        #expect(downloads.plan(.session(first), requestId: requestId, contentId: content, held: false) == [.openLink(requestId, first)])
        #expect(downloads.all[requestId]?.legs.map(\.stripe) == [Stripe(0, of: 2), Stripe(1, of: 2)], "the other stripe's leg awaits its session")
        #expect(downloads.plan(.session(second), requestId: requestId, contentId: content, held: false) == [.openLink(requestId, second)])
        let again = told(downloads.plan(.session(try open(3, request: requestId, stripe: Stripe(0, of: 2))), requestId: requestId, contentId: content,
                                        held: false))
        #expect(again.map(\.reason) == ["not-needed"] && again.map(\.sessionId) == [SessionID(3)])
        let unstriped = told(downloads.plan(.session(try open(4, request: requestId)), requestId: requestId, contentId: content, held: false))
        #expect(unstriped.map(\.sessionId) == [SessionID(4)], "a whole-content session has no leg to take")

        let started = downloads.linkOpened(first.sessionId, wantChunks: 2, complete: false) + downloads.linkOpened(second.sessionId, wantChunks: 2, complete: false)
        #expect(published(.transferStarted, in: started).compactMap { $0.fields["stripe"] } == [.object(["index": 0, "count": 2]), .object(["index": 1, "count": 2])])
        #expect(downloads.all[requestId]?.source == "peer:dev-b via r1 (stripe 1/2) + peer:dev-c via r1 (stripe 2/2)")

        let half = Downloads.LinkTally(verifiedBytes: 2 << 20, payloadBytes: 2 << 20)
        _ = downloads.received(second.sessionId, Downloads.LinkTally(verifiedBytes: 1 << 20, payloadBytes: 1 << 20), [.chunkVerified],
                               settled: false, complete: false)
        #expect(downloads.all[requestId]?.receivedBytes == 1 << 20)
        let firstDone = downloads.received(first.sessionId, half, [.chunkVerified, .chunkVerified], settled: true, complete: false)
        #expect(firstDone.contains(.closeLink(first.sessionId, abort: nil)) && told(firstDone).map(\.outcome) == [.completed])
        #expect(!firstDone.contains(.fetchFromOrigin(requestId)), "the other stripe is still coming")
        #expect(downloads.all[requestId]?.receivedBytes == 3 << 20, "a settled stripe's bytes are counted once")
        #expect(downloads.all[requestId]?.source == "peer:dev-c via r1 (stripe 2/2)", "the sources still sending")
        let whole = downloads.received(second.sessionId, half, [.chunkVerified], settled: true, complete: true)
        #expect(whole.contains(.closeLink(second.sessionId, abort: nil)) && whole.last == .finalize(requestId))
        guard case .completed(let completed)? = downloads.finalized(requestId, path: "/store/c").last else { throw TestFailure("not completed") }
        #expect(completed.sources.map(\.device) == [try DeviceID("dev-b"), try DeviceID("dev-c")] && completed.peerBytes == 4 << 20)
        #expect(completed.sources.map(\.sessionId) == [first.sessionId, second.sessionId])
    }

    /// A stripe whose path breaks waits for its new path alone while the other goes on; one the
    /// broker sends to the origin ends alone too, and the origin fetches that stripe at once,
    /// beside the other stripe's session; the download is whole when the last of them is done.
    @Test func aStripeThatLosesItsPathWaitsAloneAndTheOriginFetchesItBesideTheOthers() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        let first = try open(1, request: requestId, stripe: Stripe(0, of: 2))
        let second = try open(2, request: requestId, stripe: Stripe(1, of: 2), from: "dev-c")
        _ = downloads.plan(.session(first), requestId: requestId, contentId: content, held: false)
        _ = downloads.plan(.session(second), requestId: requestId, contentId: content, held: false)
        let broke = downloads.relayDisconnected(second.sessionId)
        #expect(broke.contains(.closeLink(second.sessionId, abort: "relay-disconnected")) && !broke.contains(.closeLink(first.sessionId, abort: "relay-disconnected")))
        let replacement = try open(5, request: requestId, stripe: Stripe(1, of: 2), from: "dev-d")
        #expect(downloads.plan(.session(replacement), requestId: requestId, contentId: content, held: false) == [.openLink(requestId, replacement)])

        let directive = OriginDirective(requestId: requestId, traceId: "t", content: summary, reason: "sender-lost; no other holder", stripe: Stripe(1, of: 2))
        let toOrigin = downloads.plan(.origin(directive), requestId: requestId, contentId: content, held: false)
        #expect(toOrigin.first == .closeLink(replacement.sessionId, abort: "origin-directed: sender-lost; no other holder"))
        #expect(toOrigin.last == .fetchFromOrigin(requestId, stripe: Stripe(1, of: 2)) && !toOrigin.contains(.fetchFromOrigin(requestId)))
        #expect(downloads.all[requestId]?.legs == [.session(first, Downloads.LinkTally()), .origin(Stripe(1, of: 2), reason: "session-ended: origin-directed: sender-lost; no other holder")])
        #expect(downloads.all[requestId]?.source == "peer:dev-b via r1 (stripe 1/2) + origin (stripe 2/2)")
        let started = published(.transferStarted, in: downloads.originStarted(requestId, stripe: Stripe(1, of: 2), wantChunks: 2))
        #expect(started.map { $0.fields["source"] } == [.string("origin")] && started.first?.fields["stripe"] == .object(["index": 1, "count": 2]))
        _ = downloads.originChunks(requestId, bytes: 1 << 20)
        #expect(downloads.originFinished(requestId, stripe: Stripe(0, of: 2), error: nil, complete: false).isEmpty, "no fetch of that stripe")
        // The origin's stripe is done first: the session's goes on, and nothing else is fetched.
        let stripeDone = downloads.originFinished(requestId, stripe: Stripe(1, of: 2), error: nil, complete: false)
        #expect(stripeDone.isEmpty && downloads.all[requestId]?.legs.count == 1, "\(stripeDone)")
        let done = downloads.received(first.sessionId, Downloads.LinkTally(verifiedBytes: 2 << 20, payloadBytes: 2 << 20), [.chunkVerified],
                                      settled: true, complete: true)
        #expect(done.last == .finalize(requestId) && !done.contains(.stopOrigin(requestId)))
        guard case .completed(let completed)? = downloads.finalized(requestId, path: "/store/c").last else { throw TestFailure("not completed") }
        #expect(completed.originBytes == 1 << 20 && completed.peerBytes == 2 << 20)

        // The session's stripe done first: the origin's finishes the download, and one that
        // fails fails it.
        for outcome in ["whole", "failed"] {
            let racing = self.downloads()
            let other = try preparedDownload(racing)
            let stripe = Stripe(0, of: 2)
            let directive = OriginDirective(requestId: other, traceId: "t", content: summary, reason: "no-connected-holder", stripe: stripe)
            #expect(racing.plan(.origin(directive), requestId: other, contentId: content, held: false) == [.fetchFromOrigin(other, stripe: stripe)],
                    "the first word of a striped request")
            let peer = try open(11, request: other, stripe: Stripe(1, of: 2), from: "dev-c")
            #expect(racing.plan(.session(peer), requestId: other, contentId: content, held: false) == [.openLink(other, peer)])
            _ = racing.linkOpened(peer.sessionId, wantChunks: 2, complete: false)
            let peerDone = racing.received(peer.sessionId, Downloads.LinkTally(verifiedBytes: 2 << 20, payloadBytes: 2 << 20), [.chunkVerified],
                                           settled: true, complete: false)
            #expect(!peerDone.contains(.fetchFromOrigin(other)) && racing.all[other]?.legs == [.origin(stripe, reason: "no-connected-holder")])
            if outcome == "whole" {
                #expect(racing.originFinished(other, stripe: stripe, error: nil, complete: true).last == .finalize(other))
            } else {
                let failed = racing.originFinished(other, stripe: stripe, error: "503", complete: false)
                #expect(failed.contains(.stopOrigin(other)) && failed.contains(.abandon(other)) && racing.all[other] == nil)
            }
        }

        // A stripe already here settles as its link opens; one whose session never comes is left
        // to the origin after the wait.
        let resumed = self.downloads()
        let other = try preparedDownload(resumed)
        let held = try open(7, request: other, stripe: Stripe(0, of: 2))
        _ = resumed.plan(.session(held), requestId: other, contentId: content, held: false)
        let settled = resumed.linkOpened(held.sessionId, wantChunks: 0, complete: false)
        #expect(settled.contains(.closeLink(held.sessionId, abort: nil)) && !settled.contains(.fetchFromOrigin(other)))
        #expect(!resumed.tick(now: .now + .milliseconds(500)).contains(.fetchFromOrigin(other)))
        #expect(resumed.tick(now: .now + .seconds(2)).contains(.fetchFromOrigin(other)))
    }

    /// A stripe done while another has over half of its stripe still to come: that one's
    /// sender is the slower, so its session ends awaiting a new path, which the broker gives
    /// from a free source; a stripe half done is left alone, and a replaced stripe is never
    /// replaced again.
    @Test func aStripeFarBehindWhenAnotherIsDoneGetsANewSenderOnce() throws {
        let downloads = downloads()
        let six = ContentSummary(contentId: content, size: 6 << 20, chunkSize: 1 << 20, packetSize: 16 << 10)
        _ = downloads.get(content, for: client)
        let requestId = try #require(downloads.all.keys.first)
        _ = downloads.prepared(requestId, six, localBytes: 0, complete: false)
        let legs = try (0..<3).map { try open(UInt64(10 + $0), request: requestId, layout: six, stripe: Stripe($0, of: 3), from: "dev-\($0)") }
        for leg in legs {
            _ = downloads.plan(.session(leg), requestId: requestId, contentId: content, held: false)
            _ = downloads.linkOpened(leg.sessionId, wantChunks: 2, complete: false)
        }
        _ = downloads.received(legs[1].sessionId, Downloads.LinkTally(verifiedBytes: 1 << 20, payloadBytes: 1 << 20, outstandingChunks: 1),
                               [.chunkVerified], settled: false, complete: false)
        _ = downloads.received(legs[2].sessionId, Downloads.LinkTally(payloadBytes: 16 << 10, outstandingChunks: 2), [], settled: false, complete: false)
        let done = downloads.received(legs[0].sessionId, Downloads.LinkTally(verifiedBytes: 2 << 20, payloadBytes: 2 << 20), [.chunkVerified],
                                      settled: true, complete: false)
        #expect(done.contains(.closeLink(legs[2].sessionId, abort: "slower-stripe")) && done.contains(.count(.stripesReplaced)))
        #expect(!done.contains { if case .closeLink(legs[1].sessionId, _) = $0 { true } else { false } }, "half done is not behind")
        #expect(told(done).map { "\($0.sessionId):\($0.outcome):\($0.reason ?? "")" } == ["\(legs[0].sessionId):completed:", "\(legs[2].sessionId):cancelled:slower-stripe"])
        #expect(published(.linkClosed, in: done).last?.fields["awaitingNewPath"] == .bool(true))

        let again = try open(20, request: requestId, layout: six, stripe: Stripe(2, of: 3), from: "dev-0")
        #expect(downloads.plan(.session(again), requestId: requestId, contentId: content, held: false) == [.openLink(requestId, again)])
        _ = downloads.linkOpened(again.sessionId, wantChunks: 2, complete: false)
        let second = downloads.received(legs[1].sessionId, Downloads.LinkTally(verifiedBytes: 2 << 20, payloadBytes: 2 << 20), [.chunkVerified],
                                        settled: true, complete: false)
        #expect(!second.contains(.count(.stripesReplaced)), "a replaced stripe is not passed round")
        #expect(downloads.all[requestId]?.sessions.map(\.open.sessionId) == [again.sessionId])

        // A sender that has sent nothing is left to the silence rule, which the matcher hears of.
        let quiet = self.downloads()
        let other = try preparedDownload(quiet)
        let pair = try (0..<2).map { try open(UInt64(30 + $0), request: other, stripe: Stripe($0, of: 2), from: "dev-\($0)") }
        for leg in pair {
            _ = quiet.plan(.session(leg), requestId: other, contentId: content, held: false)
            _ = quiet.linkOpened(leg.sessionId, wantChunks: 2, complete: false)
        }
        let alone = quiet.received(pair[0].sessionId, Downloads.LinkTally(verifiedBytes: 2 << 20, payloadBytes: 2 << 20), [.chunkVerified],
                                   settled: true, complete: false)
        #expect(!alone.contains(.count(.stripesReplaced)) && quiet.all[other]?.sessions.count == 1)
    }
}
