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

    func open(_ session: UInt64, request: RequestID, layout: ContentSummary? = nil) throws -> SessionOpen {
        SessionOpen(sessionId: SessionID(session), requestId: request, traceId: "t", role: .receiver, content: layout ?? summary,
                    address: "100.96.0.1", peerAddress: "100.96.0.2", peerDevice: try DeviceID("dev-b"), relayEndpoint: "tcp://r:7200",
                    relays: [try RelayID("r1")], window: 32)
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
        let opened = downloads.linkOpened(requestId, wantChunks: 4)
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
        _ = downloads.linkOpened(requestId, wantChunks: 4)
        let tally = Downloads.LinkTally(verifiedBytes: 1 << 20, payloadBytes: 2 << 20, rejectedChunks: 1, unopenedChunks: 0)
        let effects = downloads.received(requestId, tally, [.chunkVerified, .chunkRejected(1)], settled: false, complete: false)
        #expect(effects.contains(.closeLink(requestId, abort: "corrupt-chunks")))
        let finished = try #require(told(effects).first)
        #expect(finished.outcome == .failed && finished.rejectedChunks == 1 && finished.unopenedChunks == 0 && finished.payloadBytes == 1 << 20)
        #expect(published(.transferChunkRejected, in: effects).first?.fields["cause"] == "hash")
        guard case .awaitingNewPath = downloads.all[requestId]?.stage else { throw TestFailure("\(String(describing: downloads.all[requestId]?.stage))") }
        #expect(downloads.all[requestId]?.peerSources.map(\.bytes) == [1 << 20], "what the session verified counts as that peer's")

        let second = try open(2, request: requestId)
        #expect(downloads.plan(.session(second), requestId: requestId, contentId: content, held: false) == [.openLink(requestId, second)])
        _ = downloads.linkOpened(requestId, wantChunks: 3)
        let done = downloads.received(requestId, Downloads.LinkTally(verifiedBytes: 3 << 20, payloadBytes: 3 << 20), [.chunkVerified],
                                      settled: true, complete: true)
        #expect(done.contains(.closeLink(requestId, abort: nil)) && done.last == .finalize(requestId))
        let completed = downloads.finalized(requestId, path: "/store/c")
        guard case .completed(let summary) = completed.last else { throw TestFailure("\(completed)") }
        #expect(summary.peerBytes == 4 << 20 && summary.originBytes == 0 && summary.waiters == [client])
        #expect(completed.contains(.count(.downloadsCompleted)) && downloads.all.isEmpty)

        // Nobody offers a new path in time: the origin serves the rest.
        let waiting = self.downloads()
        let other = try preparedDownload(waiting)
        _ = waiting.plan(.session(try open(3, request: other)), requestId: other, contentId: content, held: false)
        _ = waiting.linkStalled(other, silent: true)
        #expect(!waiting.tick(now: .now + .milliseconds(500)).contains(.fetchFromOrigin(other)), "ten heartbeats to find a new path")
        #expect(waiting.tick(now: .now + .seconds(2)).contains(.fetchFromOrigin(other)))
    }

    /// The relay's connection dropped (its host died): the session ends at once, the broker is
    /// told why, and the download waits for the new path instead of turning to the origin.
    @Test func aDroppedRelayConnectionAsksForANewPathAtOnce() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        _ = downloads.plan(.session(try open(1, request: requestId)), requestId: requestId, contentId: content, held: false)
        let effects = downloads.relayDisconnected(requestId)
        #expect(effects.contains(.closeLink(requestId, abort: "relay-disconnected")) && !effects.contains(.fetchFromOrigin(requestId)))
        #expect(told(effects).map(\.reason) == ["relay-disconnected"] && told(effects).map(\.outcome) == [.failed])
        guard case .awaitingNewPath = downloads.all[requestId]?.stage else { throw TestFailure("\(String(describing: downloads.all[requestId]?.stage))") }
    }

    @Test func anOriginDirectiveWhileReceivingEndsTheSessionFirst() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        _ = downloads.plan(.session(try open(1, request: requestId)), requestId: requestId, contentId: content, held: false)
        let effects = downloads.plan(.origin(OriginDirective(requestId: requestId, traceId: "t", content: summary, reason: "relay-lost")),
                                     requestId: requestId, contentId: content, held: false)
        #expect(effects.first == .closeLink(requestId, abort: "origin-directed: relay-lost"))
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
        #expect(gone.contains(.closeLink(withdrawn, abort: "withdrawn: recalled")) && gone.contains(.abandon(withdrawn)))
        #expect(told(gone).map(\.outcome) == [.failed])
    }

    @Test func theBrokersCancelEndsOnlyItsSession() throws {
        let downloads = downloads()
        let requestId = try preparedDownload(downloads)
        _ = downloads.plan(.session(try open(9, request: requestId)), requestId: requestId, contentId: content, held: false)
        #expect(downloads.cancelled(SessionCancel(sessionId: SessionID(10), reason: "other")).isEmpty)
        let effects = downloads.cancelled(SessionCancel(sessionId: SessionID(9), reason: "relay-lost", newPathFollows: true))
        #expect(effects.first == .closeLink(requestId, abort: "relay-lost") && !effects.contains(.fetchFromOrigin(requestId)))
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
}
