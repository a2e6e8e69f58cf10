import FerryProtocol
import FerryService
import Foundation

/// Step (b)'s decisions: the holdings index that devices' announcements keep, and for each
/// request which device sends (`PeerSelection`) or that the origin serves. Also what the
/// pipeline's notices change (withdrawn content, revoked devices) and the broker's word that a
/// sender sent nothing. No I/O: the shell reads the sockets and carries out the effects.
struct Matching {
    enum Effect: Equatable {
        /// Send these frames to the broker. `requestId`: the request a decision answers, so a
        /// full queue can be published against it.
        case toBroker([Data], requestId: RequestID?)
        case publish(Publication)
        /// With transport keys: stop admitting a revoked device's key.
        case forget(DeviceID)
    }

    /// With transport keys: a device announces for itself only, and only the broker reports
    /// silent senders.
    let checkSenders: Bool
    private(set) var index = HoldingsIndex()
    private(set) var plan: SwarmPlan
    private(set) var matched = 0
    private(set) var dropped = 0
    private(set) var held: [ContentID: HeldRequests] = [:]

    /// The most devices that send one request at once.
    let stripes: Int

    init(checkSenders: Bool, lag: LagRule = LagRule(), stripes: Int = Settings.stripes.defaultValue) {
        self.checkSenders = checkSenders
        self.stripes = stripes
        plan = SwarmPlan(lag: lag)
    }

    var counters: [String: JSONValue] {
        ["devices": JSONValue(index.holders.count), "matched": JSONValue(matched), "dropped": JSONValue(dropped),
         "held": JSONValue(held.values.reduce(0) { $0 + $1.requests.count }), "swarms": plan.status]
    }

    /// A message on the holdings socket: `[topic, version, kind, body]`.
    mutating func announcement(_ frames: [Data], from sender: TransportPeer?, now: ContinuousClock.Instant = .now) -> [Effect] {
        do {
            guard frames.count == 4 else { throw WireError.malformed("announcement must be [topic, version, kind, body]") }
            let announcement = try HoldingsAnnouncement.decode(frames: Array(frames.dropFirst()))
            // The key it connected with says who it is.
            if checkSenders, sender != .device(announcement.deviceId.rawValue) {
                throw WireError.invalid("announcement for \(announcement.deviceId) from \(sender?.userId ?? "no key")")
            }
            let applied = index.apply(announcement, now: now)
            let index = index
            let moves = applied == .stale ? [] : Self.sourceChanges(plan.apply(announcement, now: now) { Self.usable($0, in: index, now: now) })
            guard applied == .changed else { return moves }
            return moves + [.publish(Publication(EventData.HoldingsUpdated(deviceId: announcement.deviceId.rawValue, serving: announcement.serving,
                                                                   contents: announcement.contents.map(\.hex))))]
        } catch {
            dropped += 1
            // A flood of bad announcements is one event in a hundred.
            guard dropped.isMultiple(of: 100) || dropped == 1 else { return [] }
            return [.publish(Publication(EventData.MessageDropped(service: "matcher", reason: "\(error)", dropped: dropped)))]
        }
    }

    /// Devices whose announcements stopped are forgotten, and held requests whose wait is over
    /// are decided.
    mutating func tick(now: ContinuousClock.Instant = .now) -> [Effect] {
        let lost = index.expire(now: now)
        for device in lost { plan.leave(device) }
        plan.expire(now: now) { index.holders[$0] != nil }
        return lost.map { .publish(Publication(EventData.DeviceLost(deviceId: $0.rawValue, reason: "announcements-stopped"))) } + release(now: now)
    }

    /// A message on the pipeline socket: a request from intake, a notice, or `sender.silent` or
    /// `source.taken` from the broker.
    mutating func pipeline(_ frames: [Data], from sender: TransportPeer?, now: ContinuousClock.Instant = .now) -> [Effect] {
        if frames.count == 3, frames[1] == Data(SenderSilent.kind.utf8) { return silent(frames, from: sender, now: now) }
        if frames.count == 3, frames[1] == Data(SourceTaken.kind.utf8) { return taken(frames, from: sender) }
        if let notice = PipelineNotice(frames: frames) {
            var effects: [Effect] = []
            switch notice {
            case .withdrawn(let withdrawal):
                index.withdraw(withdrawal.contentId)
                plan.withdraw(withdrawal.contentId)
            case .revoked(let revocation):
                index.revoke(revocation.deviceId)
                plan.leave(revocation.deviceId)
                effects = [.forget(revocation.deviceId),
                           .publish(Publication(EventData.DeviceLost(deviceId: revocation.deviceId.rawValue, reason: "revoked")))]
            }
            return effects + [.toBroker(frames, requestId: nil)]
        }
        let match: MatchRequest
        do {
            match = try MatchRequest.decode(frames: frames)
        } catch {
            dropped += 1
            return [.publish(Publication(EventData.MatchFailed(reason: "\(error)")))]
        }
        matched += 1
        let content = match.request.content.contentId
        // Requests that would be striped wait a moment for the others of a crowd: spare
        // holders are shared out among the requests that came together. A retry is answered
        // at once: the broker holds the first answer.
        guard match.attempt == 1 else { return answer(match, stripeLimit: stripes, decided: decide(match.request, now: now), now: now) }
        if held[content] != nil {
            held[content]?.requests.append(match)
            return []
        }
        let decided = decide(match.request, now: now)
        if stripes > 1, decided.spare > 1 {
            held[content] = HeldRequests(until: now + Self.crowdWindow, requests: [match])
            return []
        }
        return answer(match, stripeLimit: stripes, decided: decided, now: now)
    }

    /// How long a request that would be striped waits for others for the same content, so
    /// that a crowd meeting a few holders gives each its own holder, where one device would
    /// otherwise take them all and the rest queue behind a busy one. A crowd's requests come
    /// within milliseconds of each other.
    static let crowdWindow = Duration.milliseconds(100)

    /// Requests for one content waiting out `crowdWindow`.
    struct HeldRequests: Equatable {
        let until: ContinuousClock.Instant
        var requests: [MatchRequest]
    }

    /// When the next held requests are due, for the shell's poll.
    var nextRelease: ContinuousClock.Instant? { held.values.map(\.until).min() }

    /// The matcher is stopping: every held request is decided now, rather than on its device's
    /// retry seconds after a matcher is back.
    mutating func releaseAll() -> [Effect] {
        guard let last = held.values.map(\.until).max() else { return [] }
        return release(now: last)
    }

    /// Held requests whose wait is over are decided in the order they came, the spare holders
    /// shared out: each gets as many stripes as the spare holders divided by the requests.
    private mutating func release(now: ContinuousClock.Instant) -> [Effect] {
        var effects: [Effect] = []
        for (content, batch) in held where batch.until <= now {
            held[content] = nil
            guard let first = batch.requests.first else { continue }
            let share = max(1, decide(first.request, now: now).spare / batch.requests.count)
            // Each after the one before: its holders are assigned by then.
            for match in batch.requests {
                effects += answer(match, stripeLimit: min(stripes, share), decided: decide(match.request, now: now), now: now)
            }
        }
        return effects
    }

    /// The decision for `match` (`decided`: its sources, and how many are spare holders), with
    /// at most `stripeLimit` stripes, sent to the broker, and the swarm plan's moves that follow
    /// from it.
    private mutating func answer(_ match: MatchRequest, stripeLimit: Int, decided: (PeerSelection.Decision, spare: Int),
                                 now: ContinuousClock.Instant) -> [Effect] {
        let request = match.request
        let decision: MatchDecision, publication: Publication
        var moves: [SwarmPlan.Move] = []
        let content = request.content.contentId
        let (choice, spare) = decided
        switch choice {
        case .peers(let listed):
            // Holders of the whole content with uploads to spare each send a stripe at once.
            let striped = min(stripeLimit, spare, request.content.chunkCount)
            let sources = striped > 1 ? listed : Array(listed.prefix(PeerSelection.maxSources))
            let feeders = Array(sources.prefix(striped > 1 ? striped : 1))
            let stripes = feeders.count > 1 ? feeders.map { feeder in [feeder] + sources.filter { $0 != feeder } } : nil
            // A retry reuses the broker's earlier answer, so it adds no load to the holder and
            // changes nobody's place in the swarm. A device getting stripes joins no swarm: a
            // member passes chunks on in the order they are wanted, and its stripes arrive side
            // by side, so a follower would get them at one stripe's pace until it is done.
            if match.attempt == 1 {
                for feeder in feeders { index.noteAssigned(feeder, now: now) }
                if stripes == nil { moves = plan.join(request.deviceId, content: content, upstream: .device(sources[0]), now: now) }
            }
            decision = MatchDecision(match: match, sources: sources, stripes: stripes)
            publication = Publication(EventData.MatchFound(source: sources[0].rawValue, candidates: sources.map(\.rawValue),
                                                           deviceId: request.deviceId.rawValue, contentId: content.hex,
                                                           stillGetting: index.holders[sources[0]]?.contents.contains(content) != true,
                                                           stripes: stripes.map { _ in feeders.map(\.rawValue) }),
                                      requestId: request.requestId)
        case .origin(let reason):
            if match.attempt == 1, reason != OriginReason.onlyRequesterHolds.rawValue {
                plan.join(request.deviceId, content: content, upstream: .origin, now: now)
            }
            decision = MatchDecision(match: match, sources: [], reason: reason)
            publication = Publication(EventData.MatchNone(reason: reason, deviceId: request.deviceId.rawValue, contentId: request.content.contentId.hex),
                                      requestId: request.requestId)
        }
        guard let out = try? decision.frames() else { return [.publish(Publication(EventData.MatchFailed(reason: "encoding"), requestId: request.requestId))] }
        // After the decision: the broker opens the newcomer's session before the member behind
        // it is moved there.
        return [.publish(publication), .toBroker(out, requestId: request.requestId)] + Self.sourceChanges(moves)
    }

    /// The plan's moves, as `source.change` for the broker.
    private static func sourceChanges(_ moves: [SwarmPlan.Move]) -> [Effect] {
        moves.compactMap { move in
            let change = SourceChange(deviceId: move.device, contentId: move.content, sources: move.sources, reason: move.reason)
            return (try? change.frames()).map { .toBroker($0, requestId: nil) }
        }
    }

    /// A holder of the whole content with an upload to spare first; then a member of the
    /// content's swarm that is still getting it and feeds nobody yet (a busy holder's upload
    /// would be shared, while the member passes on the same bytes as they arrive); then a busy
    /// holder; with none of those, the origin.
    /// `spare`: how many of the sources, first, are holders of the whole content with an upload
    /// to spare.
    private func decide(_ request: DownloadRequest, now: ContinuousClock.Instant) -> (PeerSelection.Decision, spare: Int) {
        let whole = PeerSelection.decide(for: request, requesterZone: index.holders[request.deviceId]?.zone, index: index,
                                         limit: max(PeerSelection.maxSources, stripes), now: now)
        let content = request.content.contentId
        switch whole {
        case .origin(let reason) where reason == OriginReason.onlyRequesterHolds.rawValue: return (whole, 0)
        case .peers(let holders):
            // Busy by its announcements, or by the members of this swarm the plan has it feed.
            let spare = holders.filter { max(index.holders[$0]?.load ?? 0, plan.feeds($0, content: content)) < plan.fanOut }
            if !spare.isEmpty { return (.peers(spare + holders.filter { !spare.contains($0) }), spare.count) }
        case .origin: break
        }
        let members = plan.sources(for: request.deviceId, content: content) { Self.usable($0, in: index, now: now) }
        guard !members.isEmpty else { return (whole, 0) }
        switch whole {
        case .peers(let holders):
            return (.peers(Array((members + holders.filter { !members.contains($0) }).prefix(PeerSelection.maxSources))), 0)
        case .origin:
            return (.peers(Array(members.prefix(PeerSelection.maxSources))), 0)
        }
    }

    /// A member the plan may name as a source: announcing, serving, not excluded for silence.
    private static func usable(_ device: DeviceID, in index: HoldingsIndex, now: ContinuousClock.Instant) -> Bool {
        guard let holder = index.holders[device] else { return false }
        return holder.serving && holder.expiresAt > now && !index.isExcluded(device, now: now)
    }

    /// The broker's queue was full: the decision for `requestId` was not sent.
    func brokerFull(_ requestId: RequestID) -> Publication {
        Publication(EventData.MatchFailed(reason: "broker-queue-full"), requestId: requestId)
    }

    /// Only the broker sees sessions: nobody else may get a device passed over or re-plan a swarm.
    private func checkBroker(_ sender: TransportPeer?, sent kind: String) throws {
        if checkSenders, sender != .fleet(FleetRole.broker.rawValue) {
            throw WireError.invalid("\(kind) from \(sender?.userId ?? "no key"), not the broker")
        }
    }

    /// The broker's word on which path a device's download runs: the plan takes it.
    private mutating func taken(_ frames: [Data], from sender: TransportPeer?) -> [Effect] {
        do {
            let taken = try SourceTaken.decode(frames: frames)
            try checkBroker(sender, sent: SourceTaken.kind)
            plan.follow(taken.deviceId, content: taken.contentId, upstream: taken.sender.map { .device($0) } ?? .origin)
            return []
        } catch {
            dropped += 1
            return [.publish(Publication(EventData.MessageDropped(service: "matcher", reason: "\(error)", kind: SourceTaken.kind)))]
        }
    }

    private mutating func silent(_ frames: [Data], from sender: TransportPeer?, now: ContinuousClock.Instant) -> [Effect] {
        do {
            let silent = try SenderSilent.decode(frames: frames)
            try checkBroker(sender, sent: SenderSilent.kind)
            guard index.noteSilent(silent.deviceId, now: now) else { return [] }
            return [.publish(Publication(EventData.SenderExcluded(deviceId: silent.deviceId.rawValue, silentSessions: SenderSilent.limit,
                                                                  excludedForMilliseconds: SenderSilent.exclusionMilliseconds),
                                         requestId: silent.requestId))]
        } catch {
            dropped += 1
            return [.publish(Publication(EventData.MessageDropped(service: "matcher", reason: "\(error)", kind: SenderSilent.kind)))]
        }
    }
}
