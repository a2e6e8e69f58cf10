import FerryProtocol
import FerryService
import Foundation

/// The receiving device's decisions (step h, and what Ferry does when a path fails): for each
/// content this device is getting, where its bytes come from next (a session with a peer, a
/// new path, the origin), when it is done or failed, and what the local clients waiting for it
/// are told. It holds no socket and no file: `AgentLoop` feeds it what happened (a plan from
/// the broker, a manifest fetched, a batch of packets read, a tick) and carries out the effects
/// it returns, reporting back what that work found (a link opened, the file finalized).
final class Downloads {
    enum Plan: Equatable {
        case session(SessionOpen)
        case origin(OriginDirective)
    }

    /// What a receiving link has counted so far, as the loop reads it after each batch.
    struct LinkTally: Equatable {
        var verifiedBytes: UInt64 = 0
        /// Payload bytes that arrived, verified or not.
        var payloadBytes: UInt64 = 0
        var rejectedChunks = 0
        /// Of those, the chunks rejected because a packet failed its tag.
        var unopenedChunks = 0
        /// Chunks the session is still to bring.
        var outstandingChunks = 0
    }

    /// What happened on a receiving link, as it reads packets.
    enum LinkEvent: Equatable {
        case chunkVerified
        case chunkRejected(Int)
        case aborted(String)
    }

    /// A local client (`ferry get`) waiting, and where it wants a copy.
    struct Waiter: Equatable {
        var client: Data
        var output: String?
    }

    /// One session's share of a download: the whole content, or one stripe of it.
    enum Leg: Equatable {
        /// Opening the session's link, then receiving from a peer over it.
        case session(SessionOpen, LinkTally)
        /// No session for the stripe yet, or its session broke and the broker finds a new path:
        /// awaited until `until`, then the stripe is left to the origin.
        case awaiting(Stripe?, until: ContinuousClock.Instant)
        /// The origin fetches what is missing of a stripe that lost every source, by range, while
        /// the other stripes' sessions go on: their chunks never overlap.
        case origin(Stripe, reason: String)

        var stripe: Stripe? {
            switch self {
            case .session(let open, _): open.stripe
            case .awaiting(let stripe, _): stripe
            case .origin(let stripe, _): stripe
            }
        }

        var session: (open: SessionOpen, tally: LinkTally)? {
            if case .session(let open, let tally) = self { (open, tally) } else { nil }
        }
    }

    /// One content id this device is getting.
    struct Download {
        /// Where a download is. Every state it can be in, with what each holds.
        enum Stage: Equatable {
            /// Asking the origin for the manifest and the content key (and placing the request);
            /// plans that arrive meanwhile wait here, in order.
            case preparing(parked: [Plan])
            /// Prepared (the verified manifest's layout), and no plan yet: Ferry's is awaited
            /// until `planDeadline`, then the origin.
            case awaitingPlan(ContentSummary)
            /// Receiving from peers: one leg for the whole content, or one per stripe when
            /// several devices send at once (a stripe with no source left comes from the origin
            /// meanwhile). With no leg left the origin serves whatever is still missing.
            case receiving(ContentSummary, [Leg])
            /// The origin serves what is missing.
            case fromOrigin(ContentSummary, reason: String)
            /// Verified whole: the loop is finalizing the file.
            case finishing(ContentSummary)
        }

        let requestId: RequestID
        let contentId: ContentID
        var stage = Stage.preparing(parked: [])
        var waiters: [Waiter] = []
        let startedAt = Timestamp.now()
        let startClock: ContinuousClock.Instant
        var planDeadline: ContinuousClock.Instant
        var nextRetry: ContinuousClock.Instant
        /// Payload bytes that arrived from peers, verified or not: beside `peerBytes` it shows
        /// what a broken session cost in bytes sent again.
        var peerPayloadBytes: UInt64 = 0
        var localBytes: UInt64 = 0
        var peerSources: [SourceBytes] = []
        /// Stripes whose slower sender was replaced (`FinishReason.slowerStripe`): once each.
        var replacedStripes: Set<Stripe> = []
        var originBytes: UInt64 = 0
        var source = "pending"
        var lastProgress: ContinuousClock.Instant
        var lastMilestone = 0

        var summary: ContentSummary? {
            switch stage {
            case .preparing: nil
            case .awaitingPlan(let summary), .receiving(let summary, _), .fromOrigin(let summary, _), .finishing(let summary): summary
            }
        }

        var legs: [Leg] {
            if case .receiving(_, let legs) = stage { legs } else { [] }
        }

        /// The origin is fetching for it: all that is missing, or a stripe beside the sessions.
        var fetchesFromOrigin: Bool {
            if case .fromOrigin = stage { return true }
            return legs.contains { if case .origin = $0 { true } else { false } }
        }

        /// The sessions running for it: one, or one per stripe.
        var sessions: [(open: SessionOpen, tally: LinkTally)] { legs.compactMap(\.session) }

        func session(_ id: SessionID) -> (open: SessionOpen, tally: LinkTally)? {
            sessions.first { $0.open.sessionId == id }
        }

        var size: UInt64 { summary?.size ?? 0 }
        var peerBytes: UInt64 { peerSources.reduce(0) { $0 + $1.bytes } }
        var receivedBytes: UInt64 { localBytes + peerBytes + originBytes + sessions.reduce(0) { $0 + $1.tally.verifiedBytes } }

        var sources: [SourceBytes] {
            var all = peerSources
            if originBytes > 0 { all.append(SourceBytes(kind: .origin, bytes: originBytes)) }
            if localBytes > 0 { all.append(SourceBytes(kind: .local, bytes: localBytes)) }
            return all
        }

        var seconds: Double { (ContinuousClock.now - startClock).inSeconds }
    }

    /// A download verified whole and finalized, for the loop to report and hand over.
    struct Completed: Equatable {
        let requestId: RequestID
        let contentId: ContentID
        let size: UInt64
        let path: String
        let waiters: [Waiter]
        let sources: [SourceBytes]
        let peerBytes: UInt64
        let originBytes: UInt64
        let startedAt: String
        let seconds: Double
    }

    enum Effect: Equatable {
        /// Fetch the manifest and the content key, and place the request with the origin if
        /// asked; answer with `prepared` or `requestFailed`.
        case prepare(RequestID, ContentID, placeRequest: Bool)
        /// Open the session's receiving link; answer with `linkOpened` or `linkFailed`.
        case openLink(RequestID, SessionOpen)
        /// Close the session's receiving link: with a `done` (nil), or an abort with the reason.
        case closeLink(SessionID, abort: String?)
        /// Fetch what is missing from the origin, of the whole content or of one stripe; answer
        /// with `originStarted`, or at once with `originFinished` when nothing is missing.
        case fetchFromOrigin(RequestID, stripe: Stripe? = nil)
        /// Stop every origin fetch of the request.
        case stopOrigin(RequestID)
        /// Finalize the file; answer with `finalized` or `finalizeFailed`.
        case finalize(RequestID)
        /// Report the completion, hand copies to the waiters, and forget the request.
        case completed(Completed)
        /// Save what was verified, and forget the request: it failed.
        case abandon(RequestID)
        case saveProgress(RequestID)
        case tellBroker(SessionFinished)
        case publish(Publication)
        case count(AgentCount)
        case warn(String, RequestID?)
        case reply(Data, GetResult)
        case progress(Data, GetProgress)
    }

    let deviceId: DeviceID
    let planWaitMilliseconds: Int
    /// The broker's heartbeat; a broken session waits ten of them for a new path.
    var heartbeat: Duration
    private(set) var all: [RequestID: Download] = [:]
    private var effects: [Effect] = []

    init(deviceId: DeviceID, planWaitMilliseconds: Int, heartbeat: Duration) {
        self.deviceId = deviceId
        self.planWaitMilliseconds = planWaitMilliseconds
        self.heartbeat = heartbeat
    }

    private func takeEffects() -> [Effect] {
        defer { effects.removeAll(keepingCapacity: true) }
        return effects
    }

    private func publish<Payload: EventPayload>(_ payload: Payload, requestId: RequestID?, sessionId: SessionID? = nil) {
        effects.append(.publish(Publication(payload, requestId: requestId, sessionId: sessionId)))
    }

    private var me: String { deviceId.rawValue }

    private func tellBroker(_ open: SessionOpen, _ outcome: SessionOutcome, bytes: UInt64 = 0, reason: String?, rejected: Int? = nil,
                            unopened: Int? = nil) {
        effects.append(.tellBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: .receiver, outcome: outcome,
                                                   payloadBytes: bytes, reason: reason, rejectedChunks: rejected, unopenedChunks: unopened)))
    }

    // MARK: inputs

    /// `ferry get` for content this device doesn't hold: joins the download already running for
    /// it, or starts one.
    func get(_ contentId: ContentID, for waiter: Waiter, now: ContinuousClock.Instant = .now) -> [Effect] {
        if let running = all.values.first(where: { $0.contentId == contentId }) {
            all[running.requestId]?.waiters.append(waiter)
            return []
        }
        let requestId = RequestID.random(prefix: "req")
        all[requestId] = fresh(requestId, contentId, now: now)
        all[requestId]?.waiters.append(waiter)
        return [.prepare(requestId, contentId, placeRequest: true)]
    }

    /// A plan from the broker: a session with a peer, or the origin. A plan for a request this
    /// device did not make is a download pushed to it on its behalf; `held`: the content is
    /// already here.
    func plan(_ plan: Plan, requestId: RequestID, contentId: ContentID, held: Bool, now: ContinuousClock.Instant = .now) -> [Effect] {
        apply(plan, requestId: requestId, contentId: contentId, held: held, now: now)
        return takeEffects()
    }

    /// The origin answered with the verified manifest's layout; the loop opened the partial
    /// file, which already holds `localBytes` (`complete`: all of it).
    func prepared(_ requestId: RequestID, _ summary: ContentSummary, localBytes: UInt64, complete: Bool) -> [Effect] {
        guard var download = all[requestId], case .preparing(let parked) = download.stage else { return [] }
        download.stage = .awaitingPlan(summary)
        download.localBytes = localBytes
        all[requestId] = download
        if complete {
            finish(requestId)
        } else {
            for plan in parked { apply(plan, requestId: requestId, contentId: download.contentId, held: false, now: .now) }
        }
        return takeEffects()
    }

    /// Preparing, or placing the request, failed. `fatal`: the content doesn't exist, or the
    /// request is refused, so there is nothing to fall back to.
    func requestFailed(_ requestId: RequestID, reason: String, fatal: Bool) -> [Effect] {
        guard let download = all[requestId] else { return [] }
        if fatal || download.summary == nil {
            fail(requestId, reason: reason)
        } else if case .awaitingPlan = download.stage {
            startOrigin(requestId, reason: "request-not-placed: \(reason)")
        }
        return takeEffects()
    }

    /// The session's link is open and asks for `wantChunks`; with none (a stripe already
    /// here), the session is settled at once (`complete`: the content is whole).
    func linkOpened(_ sessionId: SessionID, wantChunks: Int, complete: Bool) -> [Effect] {
        guard let (requestId, open, tally) = find(sessionId) else { return [] }
        var counted = tally
        counted.outstandingChunks = wantChunks
        replaceLeg(requestId, sessionId, with: .session(open, counted))
        if let download = all[requestId] { all[requestId]?.source = Self.describeSources(download.legs) }
        publish(EventData.LinkSpawned(role: "receiver", deviceId: me, address: open.address, relayEndpoint: open.relayEndpoint,
                                      peerAddress: open.peerAddress), requestId: requestId, sessionId: open.sessionId)
        publish(EventData.TransferStarted(deviceId: me, source: open.peerDevice.rawValue, relays: open.relays.map(\.rawValue), wantChunks: wantChunks,
                                          stripe: open.stripe),
                requestId: requestId, sessionId: open.sessionId)
        if wantChunks == 0 { sessionSettled(sessionId, complete: complete) }
        return takeEffects()
    }

    /// The session's link could not be opened: the origin serves its share.
    func linkFailed(_ sessionId: SessionID, reason: String) -> [Effect] {
        guard let (requestId, open, _) = settle(sessionId) else { return [] }
        effects.append(.warn("cannot spawn a link: \(reason)", requestId))
        tellBroker(open, .failed, reason: FinishReason.linkSpawnFailed.rawValue)
        legEnded(requestId, stripe: open.stripe, originReason: FinishReason.linkSpawnFailed.rawValue)
        return takeEffects()
    }

    /// A batch of packets read on a session's link: its counts now, and what happened on it.
    /// `settled`: every chunk the session was to bring is verified or rejected, `complete` the
    /// content whole.
    func received(_ sessionId: SessionID, _ tally: LinkTally, _ happened: [LinkEvent], settled: Bool, complete: Bool) -> [Effect] {
        guard let (requestId, open, _) = find(sessionId) else { return [] }
        replaceLeg(requestId, sessionId, with: .session(open, tally))
        for event in happened {
            switch event {
            case .chunkVerified:
                milestone(requestId)
            case .chunkRejected(let chunk):
                effects.append(.count(.chunksRejected))
                publish(EventData.TransferChunkRejected(chunk: chunk, sender: open.peerDevice.rawValue, deviceId: me,
                                                        cause: tally.unopenedChunks > 0 ? "tag" : "hash"),
                        requestId: requestId, sessionId: open.sessionId)
                // Nothing more is taken on a path caught carrying a corrupt chunk: the broker
                // decides whom to blame (the sender, the relay) and finds another.
                endSession(sessionId, reason: FinishReason.corruptChunks.rawValue, outcome: .failed, awaitNewPath: true, blame: true)
                return takeEffects()
            case .aborted(let reason):
                endSession(sessionId, reason: reason, outcome: .cancelled)
                return takeEffects()
            }
        }
        if settled { sessionSettled(sessionId, complete: complete) }
        return takeEffects()
    }

    /// Reading the session's link failed.
    func linkBroke(_ sessionId: SessionID, reason: String) -> [Effect] {
        endSession(sessionId, reason: reason, outcome: .failed)
        return takeEffects()
    }

    /// The connection to the session's relay dropped: the relay, or the host it ran on (a
    /// device's own relay dies with the device), is gone. The broker is asked for a new path at
    /// once, rather than after it misses that party's heartbeats; what was verified is kept.
    func relayDisconnected(_ sessionId: SessionID) -> [Effect] {
        endSession(sessionId, reason: FinishReason.relayDisconnected.rawValue, outcome: .failed, awaitNewPath: true)
        return takeEffects()
    }

    /// The sender sent nothing in time (`silent`), or the link went idle.
    func linkStalled(_ sessionId: SessionID, silent: Bool) -> [Effect] {
        if silent {
            effects.append(.count(.sessionsSenderSilent))
            endSession(sessionId, reason: SenderSilent.reason, outcome: .failed, awaitNewPath: true)
        } else {
            endSession(sessionId, reason: FinishReason.linkIdle.rawValue, outcome: .failed)
        }
        return takeEffects()
    }

    /// The broker cancelled a session; this device's, if it receives on it.
    func cancelled(_ cancel: SessionCancel) -> [Effect] {
        endSession(cancel.sessionId, reason: cancel.reason, outcome: .cancelled, awaitNewPath: cancel.newPathFollows == true)
        return takeEffects()
    }

    func originStarted(_ requestId: RequestID, stripe: Stripe? = nil, wantChunks: Int) -> [Effect] {
        let reason: String
        switch (all[requestId]?.stage, stripe) {
        case (.fromOrigin(_, let whole)?, nil): reason = whole
        case (.receiving(_, let legs)?, let stripe?):
            guard let why = legs.lazy.compactMap({ if case .origin(stripe, let why) = $0 { why } else { nil } }).first else { return [] }
            reason = why
        default: return []
        }
        publish(EventData.TransferStarted(deviceId: me, source: "origin", reason: reason, wantChunks: wantChunks, stripe: stripe), requestId: requestId)
        return takeEffects()
    }

    func originChunks(_ requestId: RequestID, bytes: UInt64) -> [Effect] {
        guard all[requestId] != nil else { return [] }
        all[requestId]?.originBytes += bytes
        milestone(requestId)
        return takeEffects()
    }

    /// The origin's fetch, of the whole content or of `stripe`, ended: with an error, or with
    /// the content `complete` or not.
    func originFinished(_ requestId: RequestID, stripe: Stripe? = nil, error: String?, complete: Bool) -> [Effect] {
        guard let download = all[requestId] else { return [] }
        switch (download.stage, stripe) {
        case (.fromOrigin, nil):
            if let error { fail(requestId, reason: "origin fetch failed: \(error)") }
            else if complete { finish(requestId) }
            else { fail(requestId, reason: "origin fetch ended with chunks missing") }
        case (.receiving(let summary, let legs), let stripe?):
            guard let index = legs.firstIndex(where: { if case .origin(stripe, _) = $0 { true } else { false } }) else { break }
            if let error { fail(requestId, reason: "origin fetch of stripe \(stripe) failed: \(error)"); break }
            if complete { finish(requestId); break }
            var remaining = legs
            remaining.remove(at: index)
            all[requestId]?.stage = .receiving(summary, remaining)
            if !remaining.isEmpty { all[requestId]?.source = Self.describeSources(remaining) }
            // Its stripe is here; what the other legs leave missing comes once they end.
            legEnded(requestId, stripe: nil, originReason: "stripes-ended")
        default: break
        }
        return takeEffects()
    }

    /// The file is final at `path`.
    func finalized(_ requestId: RequestID, path: String) -> [Effect] {
        guard let download = all.removeValue(forKey: requestId), case .finishing(let summary) = download.stage else { return [] }
        effects.append(.count(.downloadsCompleted))
        let seconds = download.seconds
        // Published before the completion goes out, so the stream reads transfer, then fulfilment.
        publish(EventData.TransferCompleted(deviceId: me, contentId: download.contentId.hex, size: summary.size, bytesFromPeers: download.peerBytes,
                                            bytesFromOrigin: download.originBytes, bytesLocal: download.localBytes,
                                            peerPayloadBytes: download.peerPayloadBytes, seconds: seconds), requestId: requestId)
        effects.append(.completed(Completed(requestId: requestId, contentId: download.contentId, size: summary.size, path: path,
                                            waiters: download.waiters, sources: download.sources, peerBytes: download.peerBytes,
                                            originBytes: download.originBytes, startedAt: download.startedAt, seconds: seconds)))
        return takeEffects()
    }

    func finalizeFailed(_ requestId: RequestID, error: String) -> [Effect] {
        fail(requestId, reason: error)
        return takeEffects()
    }

    /// The server withdrew the content: its downloads fail.
    func withdrawn(_ contentId: ContentID, reason: String) -> [Effect] {
        for download in all.values where download.contentId == contentId { fail(download.requestId, reason: "withdrawn: \(reason)") }
        return takeEffects()
    }

    /// Deadlines, retries, and progress for the waiting clients.
    func tick(now: ContinuousClock.Instant = .now) -> [Effect] {
        for (requestId, download) in all {
            switch download.stage {
            case .receiving(_, let legs):
                for case .awaiting(let stripe, let until) in legs where now >= until {
                    dropLeg(requestId, stripe: stripe, originReason: "no-new-path-in-time")
                }
            case .awaitingPlan where now >= download.planDeadline:
                startOrigin(requestId, reason: "no-plan-in-time")
            case .awaitingPlan where now >= download.nextRetry:
                // Same request id: Ferry treats it as the same request.
                all[requestId]?.nextRetry = now + .seconds(5)
                effects.append(.prepare(requestId, download.contentId, placeRequest: true))
            default: break
            }
            if now - download.lastProgress >= .milliseconds(500), let current = all[requestId], current.summary != nil {
                progress(current, now: now)
            }
        }
        return takeEffects()
    }

    /// Content ids being got (never evicted to make room), and the bytes each will take.
    var reservations: [(contentId: ContentID, bytes: UInt64, requestId: RequestID)] {
        all.values.map { ($0.contentId, $0.size, $0.requestId) }
    }

    func isPreparing(_ requestId: RequestID) -> Bool {
        if case .preparing = all[requestId]?.stage { true } else { false }
    }

    // MARK: decisions

    private func fresh(_ requestId: RequestID, _ contentId: ContentID, now: ContinuousClock.Instant) -> Download {
        Download(requestId: requestId, contentId: contentId, startClock: now, planDeadline: now + .milliseconds(planWaitMilliseconds),
                 nextRetry: now + .seconds(5), lastProgress: now)
    }

    private func apply(_ plan: Plan, requestId: RequestID, contentId: ContentID, held: Bool, now: ContinuousClock.Instant) {
        if all[requestId] == nil {
            guard !held else {
                if case .session(let open) = plan { tellBroker(open, .cancelled, reason: FinishReason.alreadyHeld.rawValue) }
                return
            }
            all[requestId] = fresh(requestId, contentId, now: now)
            effects.append(.prepare(requestId, contentId, placeRequest: false))
        }
        guard let download = all[requestId] else { return }
        if case .preparing(var parked) = download.stage {
            parked.append(plan)
            all[requestId]?.stage = .preparing(parked: parked)
            return
        }
        switch plan {
        case .session(let open): startReceiving(requestId, open, now: now)
        case .origin(let directive):
            if case .awaitingPlan(let summary) = download.stage, let stripe = directive.stripe {
                // The first word of a striped request: its other stripes' sessions are on their way,
                // and the origin fetches this one meanwhile.
                return fetchStripe(requestId, stripe, summary: summary, legs: awaitingStripes(stripe.count, now: now).filter { $0.stripe != stripe },
                                   reason: directive.reason)
            }
            // The broker gave up on the request's sessions, or on one stripe's: they end here
            // too, and the origin serves what they were to bring.
            let ending = download.legs.filter { leg in
                if case .origin = leg { return false }
                return directive.stripe == nil || leg.stripe == directive.stripe
            }
            guard !ending.isEmpty else { return startOrigin(requestId, reason: directive.reason) }
            for leg in ending {
                if let (open, _) = leg.session {
                    endSession(open.sessionId, reason: "origin-directed: \(directive.reason)", outcome: .cancelled)
                } else {
                    dropLeg(requestId, stripe: leg.stripe, originReason: directive.reason)
                }
            }
        }
    }

    private func startReceiving(_ requestId: RequestID, _ open: SessionOpen, now: ContinuousClock.Instant) {
        guard let download = all[requestId] else { return }
        if download.session(open.sessionId) != nil { return }  // the broker repeated it
        let summary: ContentSummary
        var legs: [Leg]
        switch download.stage {
        case .awaitingPlan(let prepared):
            summary = prepared
            // The first of a striped request's sessions: the others are on their way.
            legs = open.stripe.map { awaitingStripes($0.count, now: now) } ?? [.awaiting(nil, until: now)]
        case .receiving(let prepared, let current):
            summary = prepared
            legs = current
        default:
            // Too late (the origin is already serving it): tell the broker, so it closes the
            // session and frees its addresses.
            return tellBroker(open, .cancelled, reason: FinishReason.notNeeded.rawValue)
        }
        // A session may only take the place of a leg awaiting one for the same share.
        guard let index = legs.firstIndex(where: { if case .awaiting(let stripe, _) = $0 { stripe == open.stripe } else { false } }) else {
            return tellBroker(open, .cancelled, reason: FinishReason.notNeeded.rawValue)
        }
        guard open.content == summary else {
            effects += Self.refuseLayout(open, role: .receiver, verified: summary, deviceId: deviceId)
            legs.remove(at: index)
            all[requestId]?.stage = .receiving(summary, legs)
            return legEnded(requestId, stripe: open.stripe, originReason: FinishReason.layoutMismatch.rawValue)
        }
        legs[index] = .session(open, LinkTally())
        all[requestId]?.stage = .receiving(summary, legs)
        effects.append(.openLink(requestId, open))
    }

    /// A leg for each of `count` stripes, awaiting its session for as long as a new path may take.
    private func awaitingStripes(_ count: Int, now: ContinuousClock.Instant) -> [Leg] {
        (0..<count).map { .awaiting(Stripe($0, of: count), until: now + heartbeat * 10) }
    }

    /// Every chunk the session was to bring is verified or rejected.
    private func sessionSettled(_ sessionId: SessionID, complete: Bool) {
        guard let (requestId, open, tally) = settle(sessionId) else { return }
        effects.append(.closeLink(sessionId, abort: nil))
        tellBroker(open, .completed, bytes: tally.verifiedBytes, reason: nil)
        publish(EventData.LinkClosed(role: "receiver", deviceId: me, reason: "done", payloadBytes: tally.payloadBytes, rejectedChunks: tally.rejectedChunks),
                requestId: requestId, sessionId: open.sessionId)
        if complete { return finish(requestId) }
        legEnded(requestId, stripe: tally.rejectedChunks > 0 ? open.stripe : nil, originReason: "rejected-chunks")
        if open.stripe != nil { replaceSlowerStripe(requestId) }
    }

    /// A stripe is done: a stripe with over half of its chunks still to come has the slower
    /// sender (they started together), so it gets a new path from a source free of this request,
    /// such as the one just done; once per stripe, so a stripe is never passed round. A sender
    /// that has sent nothing yet is left to the silence rule (`SenderSilent`), which the matcher
    /// hears of.
    private func replaceSlowerStripe(_ requestId: RequestID) {
        guard let download = all[requestId] else { return }
        let behind = download.sessions.filter { session in
            guard let stripe = session.open.stripe, !download.replacedStripes.contains(stripe), session.tally.payloadBytes > 0 else { return false }
            return session.tally.outstandingChunks * 2 > stripe.chunks(of: session.open.content.chunkCount).count
        }
        guard let slowest = behind.max(by: { $0.tally.outstandingChunks < $1.tally.outstandingChunks }), let stripe = slowest.open.stripe else { return }
        all[requestId]?.replacedStripes.insert(stripe)
        effects.append(.count(.stripesReplaced))
        endSession(slowest.open.sessionId, reason: FinishReason.slowerStripe.rawValue, outcome: .cancelled, awaitNewPath: true)
    }

    /// The session ended before it delivered everything. What is missing of its share comes
    /// from the origin, unless the broker is finding a new path (`awaitNewPath`), which then
    /// resumes from the first chunk not yet verified. `blame`: the counts of rejected chunks go
    /// to the broker.
    private func endSession(_ sessionId: SessionID, reason: String, outcome: SessionOutcome, awaitNewPath: Bool = false, blame: Bool = false) {
        guard let (requestId, open, tally) = settle(sessionId) else { return }
        effects.append(.closeLink(sessionId, abort: reason))
        tellBroker(open, outcome, bytes: tally.verifiedBytes, reason: reason, rejected: blame ? tally.rejectedChunks : nil,
                   unopened: blame ? tally.unopenedChunks : nil)
        publish(EventData.LinkClosed(role: "receiver", deviceId: me, reason: reason, payloadBytes: tally.payloadBytes, verifiedBytes: tally.verifiedBytes,
                                     awaitingNewPath: awaitNewPath), requestId: requestId, sessionId: open.sessionId)
        if awaitNewPath {
            if case .receiving(let summary, let legs) = all[requestId]?.stage {
                all[requestId]?.stage = .receiving(summary, legs + [.awaiting(open.stripe, until: .now + heartbeat * 10)])
            }
        } else {
            legEnded(requestId, stripe: open.stripe, originReason: "session-ended: \(reason)")
        }
    }

    /// The session is over: what it verified counts as that peer's, and its leg is gone; the
    /// caller puts another in its place or calls `legEnded`.
    private func settle(_ sessionId: SessionID) -> (RequestID, SessionOpen, LinkTally)? {
        guard let (requestId, open, tally) = find(sessionId), case .receiving(let summary, let legs) = all[requestId]?.stage else { return nil }
        all[requestId]?.peerPayloadBytes += tally.payloadBytes
        if tally.verifiedBytes > 0 {
            all[requestId]?.peerSources.append(SourceBytes(kind: .peer, device: open.peerDevice, sessionId: open.sessionId, bytes: tally.verifiedBytes))
        }
        all[requestId]?.stage = .receiving(summary, legs.filter { $0.session?.open.sessionId != sessionId })
        // `ferry get` shows the sources still sending; the last one's name stays until another starts.
        if let legs = all[requestId]?.legs, case let sending = Self.describeSources(legs), !sending.isEmpty { all[requestId]?.source = sending }
        return (requestId, open, tally)
    }

    /// The download running `sessionId`, and that session's link and tally.
    private func find(_ sessionId: SessionID) -> (RequestID, SessionOpen, LinkTally)? {
        for download in all.values {
            if let (open, tally) = download.session(sessionId) { return (download.requestId, open, tally) }
        }
        return nil
    }

    private func replaceLeg(_ requestId: RequestID, _ sessionId: SessionID, with leg: Leg) {
        guard case .receiving(let summary, var legs) = all[requestId]?.stage,
              let index = legs.firstIndex(where: { $0.session?.open.sessionId == sessionId }) else { return }
        legs[index] = leg
        all[requestId]?.stage = .receiving(summary, legs)
    }

    /// The leg awaiting a session for `stripe` gives up: the origin will serve its share.
    private func dropLeg(_ requestId: RequestID, stripe: Stripe?, originReason: String) {
        guard case .receiving(let summary, let legs) = all[requestId]?.stage,
              let index = legs.firstIndex(where: { if case .awaiting(let awaited, _) = $0 { awaited == stripe } else { false } }) else { return }
        var remaining = legs
        remaining.remove(at: index)
        all[requestId]?.stage = .receiving(summary, remaining)
        legEnded(requestId, stripe: stripe, originReason: originReason)
    }

    /// A leg ended, perhaps with its share not all here. A stripe's missing chunks come from the
    /// origin at once while the other stripes go on (`stripe`: the stripe that may be short);
    /// once no leg is left the origin serves whatever is still missing.
    private func legEnded(_ requestId: RequestID, stripe: Stripe?, originReason: String) {
        guard case .receiving(let summary, let legs) = all[requestId]?.stage else { return }
        if legs.isEmpty {
            all[requestId]?.stage = .awaitingPlan(summary)
            return startOrigin(requestId, reason: originReason)
        }
        guard let stripe, !legs.contains(where: { $0.stripe == stripe }) else { return }
        fetchStripe(requestId, stripe, summary: summary, legs: legs, reason: originReason)
    }

    /// The origin fetches `stripe` beside the other legs.
    private func fetchStripe(_ requestId: RequestID, _ stripe: Stripe, summary: ContentSummary, legs: [Leg], reason: String) {
        let legs = legs + [.origin(stripe, reason: reason)]
        all[requestId]?.stage = .receiving(summary, legs)
        all[requestId]?.source = Self.describeSources(legs)
        effects.append(.fetchFromOrigin(requestId, stripe: stripe))
    }

    private func startOrigin(_ requestId: RequestID, reason: String) {
        guard var download = all[requestId], let summary = download.summary else { return }
        // Sessions end (`endSession`) before the origin takes over.
        switch download.stage {
        case .fromOrigin, .finishing, .preparing, .receiving: return
        case .awaitingPlan: break
        }
        download.stage = .fromOrigin(summary, reason: reason)
        download.source = download.peerSources.isEmpty ? "origin" : download.source + " + origin"
        all[requestId] = download
        effects.append(.fetchFromOrigin(requestId))
    }

    /// Where the bytes come from, as `ferry get` shows it: each session's peer and relays, and
    /// the origin for each stripe it fetches.
    private static func describeSources(_ legs: [Leg]) -> String {
        legs.compactMap { leg in
            switch leg {
            case .session(let open, _):
                let stripe = open.stripe.map { " (stripe \($0))" } ?? ""
                return "peer:\(open.peerDevice) via \(open.relays.map(\.rawValue).joined(separator: ","))\(stripe)"
            case .origin(let stripe, _): return "origin (stripe \(stripe))"
            case .awaiting: return nil
            }
        }.joined(separator: " + ")
    }

    private func finish(_ requestId: RequestID) {
        guard var download = all[requestId], let summary = download.summary else { return }
        if download.fetchesFromOrigin { effects.append(.stopOrigin(requestId)) }
        // Whole: the other stripes' sessions are done too (what they were to bring is here).
        for (open, tally) in download.sessions {
            effects.append(.closeLink(open.sessionId, abort: nil))
            tellBroker(open, .completed, bytes: tally.verifiedBytes, reason: nil)
            download.peerPayloadBytes += tally.payloadBytes
            if tally.verifiedBytes > 0 {
                download.peerSources.append(SourceBytes(kind: .peer, device: open.peerDevice, sessionId: open.sessionId, bytes: tally.verifiedBytes))
            }
        }
        download.stage = .finishing(summary)
        all[requestId] = download
        effects.append(.finalize(requestId))
    }

    private func fail(_ requestId: RequestID, reason: String) {
        guard let download = all.removeValue(forKey: requestId) else { return }
        if download.fetchesFromOrigin { effects.append(.stopOrigin(requestId)) }
        switch download.stage {
        case .receiving(_, let legs):
            for case .session(let open, let tally) in legs {
                effects.append(.closeLink(open.sessionId, abort: reason))
                tellBroker(open, .failed, bytes: tally.verifiedBytes, reason: reason)
            }
        case .preparing(let parked):
            // Sessions offered before the manifest came are declined, so the broker frees them.
            for case .session(let open) in parked { tellBroker(open, .cancelled, reason: reason) }
        case .awaitingPlan, .fromOrigin, .finishing: break
        }
        if download.summary != nil { effects.append(.abandon(requestId)) }
        effects.append(.count(.downloadsFailed))
        effects.append(.warn("download failed: \(reason)", requestId))
        publish(EventData.TransferFailed(deviceId: me, contentId: download.contentId.hex, reason: reason), requestId: requestId)
        for waiter in download.waiters {
            effects.append(.reply(waiter.client, GetResult(requestId: requestId, contentId: download.contentId, ok: false, error: reason,
                                                           path: nil, sources: download.sources, seconds: 0)))
        }
    }

    private func progress(_ download: Download, now: ContinuousClock.Instant) {
        all[download.requestId]?.lastProgress = now
        effects.append(.saveProgress(download.requestId))
        for waiter in download.waiters {
            effects.append(.progress(waiter.client, GetProgress(requestId: download.requestId, receivedBytes: download.receivedBytes,
                                                                totalBytes: download.size, source: download.source)))
        }
        if now - download.startClock > .seconds(1) { publishProgress(download) }
    }

    /// A progress event at each quarter of the content, so even a sub-second transfer shows some.
    private func milestone(_ requestId: RequestID) {
        guard let download = all[requestId], download.size > 0 else { return }
        let reached = Int(download.receivedBytes * 4 / download.size)
        if reached > download.lastMilestone && reached < 4 {
            all[requestId]?.lastMilestone = reached
            publishProgress(download)
        }
    }

    private func publishProgress(_ download: Download) {
        publish(EventData.TransferProgress(deviceId: me, receivedBytes: download.receivedBytes, totalBytes: download.size, source: download.source),
                requestId: download.requestId, sessionId: download.sessions.first?.open.sessionId)
    }

    /// A session whose content summary isn't the verified manifest's: the layout fixes which
    /// bytes each nonce seals, so a session in another layout is refused at both ends, never
    /// served in the layout it claims.
    static func refuseLayout(_ open: SessionOpen, role: SessionRole, verified: ContentSummary?, deviceId: DeviceID) -> [Effect] {
        let refused = EventData.LinkRefused(role: role.rawValue, deviceId: deviceId.rawValue, reason: FinishReason.layoutMismatch.rawValue,
                                            sessionLayout: EventData.Layout(open.content), manifestLayout: verified.map(EventData.Layout.init))
        return [
            .count(.sessionsRefusedLayoutMismatch),
            .warn("session \(open.sessionId) refused as \(role): its content layout (chunk \(open.content.chunkSize), packet \(open.content.packetSize)) differs from the manifest", open.requestId),
            .publish(Publication(refused, requestId: open.requestId, sessionId: open.sessionId)),
            .tellBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: role, outcome: .failed, payloadBytes: 0,
                                        reason: FinishReason.layoutMismatch.rawValue)),
        ]
    }
}
