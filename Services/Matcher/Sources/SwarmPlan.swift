import FerryProtocol
import FerryService
import Foundation

/// When the plan takes a hop of a chain for lagging (`FERRY_LAG_CHUNKS`, `FERRY_LAG_PERCENT`):
/// the member behind is at least `chunks` behind where its upstream is reckoned to be, and
/// gains chunks at under `percent` of its upstream's pace, two announcements running. A
/// pipelined hop trails by about one chunk, so the default 8 (2 MiB at the default chunk size)
/// is no healthy hop's; fewer moves devices sooner and on less evidence.
public struct LagRule: Sendable, Equatable {
    public var chunks: Int
    public var percent: Int

    public init(chunks: Int = Settings.lagChunks.defaultValue, percent: Int = Settings.lagPercent.defaultValue) {
        self.chunks = chunks
        self.percent = percent
    }

    public static let chunkRange = 1...1_000_000
    public static let percentRange = 1...99
}

/// Step (b) for a crowd: who gets content that nobody holds whole yet from whom. Every device
/// the matcher sent for content is a member of that content's swarm, with one upstream: the
/// origin, a holder, or another member, whose chunks it gets as that member verifies them
/// (a device sends what it holds while it is still getting the rest). A new member goes behind
/// a member that feeds fewer than `fanOut` others, the one holding most first, so the origin
/// sends each byte once and the members form a pipelined chain. When a member leaves, the
/// one behind it gets a new source from the members ahead of it, never from its own followers,
/// which could only send what it already has. A chain runs at its slowest hop, so a hop that
/// lags is re-planned: the member that fell behind goes to the tail, and a member that two
/// followers in turn fell behind, or one while it fell behind itself (its uplink is slow),
/// goes there itself (`Move`).
///
/// The plan is the matcher's alone (docs/architecture.md): the broker turns its sources into
/// sessions and, when a path breaks, tries the next source the plan gave, and says which one
/// it took (`follow`).
struct SwarmPlan {
    enum Upstream: Equatable, Sendable {
        case origin
        case device(DeviceID)
    }

    struct Member: Equatable, Sendable {
        let device: DeviceID
        var upstream: Upstream
        let joined: ContinuousClock.Instant
        /// Chunks it said it holds (its last announcement), 0 until it says.
        var chunks: Int
        /// How fast its chunks grow where it is now: measured anew whenever it is placed.
        var pace = Pace.unknown
        /// Hops into it that lagged two announcements running.
        var strikes = 0
        /// Followers that fell behind it and were moved: at the next one it is taken for a
        /// slow uplink and moved itself.
        var laggedBehind = 0
        /// Why it was moved to the tail, if it was: a newcomer goes ahead of it.
        var movedFor: SourceChange.Reason?
        var demoted: Bool { movedFor != nil }
    }

    /// The fastest pace any member fed by a member has shown in a swarm, and whether a member
    /// was moved there for its slow uplink. On home lines every uplink is a fraction of a
    /// downlink, so every hop after the origin's lags the same: moving a member for it only puts
    /// its follower on the origin, and the next one in its place is as slow. One such move is
    /// made on pace alone (a slow first device looks the same until it is moved); after it, an
    /// uplink counts as slow only against a faster hop seen in the swarm.
    struct UplinkEvidence: Equatable, Sendable {
        var fastestHop = 0.0
        var movedOne = false
    }

    /// A member's progress as its announcements since it was last placed show it.
    enum Pace: Equatable, Sendable {
        /// Placed (joined or moved); no announcement since.
        case unknown
        /// One announcement since.
        case seen(chunks: Int, at: ContinuousClock.Instant)
        /// Chunks per second, smoothed over the announcements since.
        case measured(chunks: Int, at: ContinuousClock.Instant, perSecond: Double)

        mutating func observe(chunks: Int, at now: ContinuousClock.Instant) {
            switch self {
            case .unknown:
                self = .seen(chunks: chunks, at: now)
            case .seen(let before, let then), .measured(let before, let then, _):
                let seconds = (now - then).inSeconds
                guard seconds > 0 else { return }
                let latest = Double(chunks - before) / seconds
                let smoothed = if case .measured(_, _, let earlier) = self { (earlier + latest) / 2 } else { latest }
                self = .measured(chunks: chunks, at: now, perSecond: smoothed)
            }
        }

        var perSecond: Double? { if case .measured(_, _, let rate) = self { rate } else { nil } }

        /// Its chunks at `now`, reckoned on from its last announcement at its pace.
        func chunks(at now: ContinuousClock.Instant) -> Double? {
            guard case .measured(let chunks, let then, let rate) = self else { return nil }
            return Double(chunks) + rate * (now - then).inSeconds
        }
    }

    /// The plan moved a device still getting the content: it gets the rest from `sources`
    /// (best first; none: the origin). The matcher sends it to the broker as `source.change`.
    struct Move: Equatable, Sendable {
        let device: DeviceID
        let content: ContentID
        let sources: [DeviceID]
        let reason: SourceChange.Reason
    }

    /// A member that neither holds nor announces the content this long after joining has
    /// given up on it (its request failed, or it restarted).
    static let patience = Duration.seconds(10)
    let fanOut: Int
    let lag: LagRule
    private(set) var swarms: [ContentID: [DeviceID: Member]] = [:]
    /// What each swarm's hops have shown of its uplinks: whether one is slow for this swarm.
    private var uplinks: [ContentID: UplinkEvidence] = [:]
    /// Which swarms each device is in, so an announcement touches only those.
    private var memberships: [DeviceID: Set<ContentID>] = [:]
    /// Members that left still getting the content because they were lost (announcements
    /// stopped) or revoked, with the upstream each had. A device that loses power or its network
    /// sends no reset: the broker re-paths its followers only once it has missed 5 heartbeats,
    /// while the matcher misses its announcements after 3 progress intervals. So a follower
    /// that gains nothing behind one takes its place at once (`apply`).
    private var departed: [ContentID: [DeviceID: Upstream]] = [:]

    init(fanOut: Int = 1, lag: LagRule = LagRule()) {
        self.fanOut = max(1, fanOut)
        self.lag = lag
    }

    /// In the order they joined.
    func members(of content: ContentID) -> [Member] {
        (swarms[content] ?? [:]).values.sorted { $0.joined < $1.joined || ($0.joined == $1.joined && $0.device < $1.device) }
    }

    /// Who could send `content` to `device`, best first, at most `limit`: a member feeding
    /// fewer than `fanOut` others, the one holding most (then the earliest), followed by its
    /// own upstream members, nearest first, for the broker to try if it fails, then other
    /// such members. Never the device itself or a member fed, directly or not, by it. `usable`
    /// says whether a member may be chosen at all (announcing, serving, not excluded).
    /// Linear in the swarm's size: the matcher asks once per request.
    func sources(for device: DeviceID, content: ContentID, limit: Int = PeerSelection.maxSources,
                 usable: (DeviceID) -> Bool) -> [DeviceID] {
        guard let swarm = swarms[content] else { return [] }
        var fedBy: [DeviceID: [DeviceID]] = [:]
        for member in swarm.values {
            if case .device(let up) = member.upstream { fedBy[up, default: []].append(member.device) }
        }
        var excluded: Set<DeviceID> = [device]
        var frontier = [device]
        while let next = frontier.popLast() {
            for follower in fedBy[next] ?? [] where excluded.insert(follower).inserted { frontier.append(follower) }
        }
        let candidates = swarm.values.filter { !excluded.contains($0.device) && usable($0.device) }
        let usableIds = Set(candidates.map(\.device))
        let free = candidates.filter { (fedBy[$0.device]?.count ?? 0) < fanOut }.sorted(by: Self.tailFirst)
        guard var best = free.first else { return [] }
        // Members moved for lagging stay last: a newcomer goes ahead of them, behind the
        // member that feeds the first of them, and `join` moves them behind the newcomer.
        while best.demoted, case .device(let up) = best.upstream, usableIds.contains(up), let ahead = swarm[up],
              fedBy[up]?.allSatisfy({ swarm[$0]?.demoted == true }) == true {
            best = ahead
        }
        var chosen = [best.device]
        var seen: Set<DeviceID> = [best.device]
        for up in upstreams(from: best.upstream, content: content) {
            guard chosen.count < limit, swarm[up] != nil, seen.insert(up).inserted else { break }
            if usableIds.contains(up) { chosen.append(up) }
        }
        for member in free.dropFirst() where chosen.count < limit && seen.insert(member.device).inserted { chosen.append(member.device) }
        return chosen
    }

    /// The best member to go behind: not one moved for lagging, then the one holding most,
    /// then the earliest.
    private static func tailFirst(_ a: Member, _ b: Member) -> Bool {
        if a.demoted != b.demoted { return !a.demoted }
        if a.chunks != b.chunks { return a.chunks > b.chunks }
        if a.joined != b.joined { return a.joined < b.joined }
        return a.device < b.device
    }

    /// How many members of `content`'s swarm `device` feeds: a holder's sessions as the plan
    /// made them, which its announcements show only once they start.
    func feeds(_ device: DeviceID, content: ContentID) -> Int {
        (swarms[content] ?? [:]).values.reduce(0) { $0 + ($1.upstream == .device(device) ? 1 : 0) }
    }

    /// The broker opened `device`'s path from `upstream` (`source.taken`): it chose among the
    /// sources the plan listed, or a path broke, so this is what runs, whatever the plan said.
    /// Its pace is measured afresh there. A device in no swarm (a holder, striped) is left alone.
    /// A source listed before the plan put it behind `device` makes the two wait on each other;
    /// `apply` moves `device` at its next announcement (not here: a move the broker cannot carry
    /// out yet is answered with this path again, and would be made again at once).
    mutating func follow(_ device: DeviceID, content: ContentID, upstream: Upstream) {
        guard let member = swarms[content]?[device], member.upstream != upstream else { return }
        swarms[content]?[device]?.upstream = upstream
        swarms[content]?[device]?.pace = .unknown
    }

    /// `upstream` and then its own upstreams, nearest first, up the swarm: it ends at the origin,
    /// after a device in no swarm (a holder), or before one it named already (a cycle).
    private func upstreams(from upstream: Upstream, content: ContentID) -> some Sequence<DeviceID> {
        let swarm = swarms[content] ?? [:]
        return sequence(state: (next: Optional(upstream), seen: Set<DeviceID>())) { state -> DeviceID? in
            guard case .device(let up)? = state.next, state.seen.insert(up).inserted else { return nil }
            state.next = swarm[up]?.upstream
            return up
        }
    }

    /// Whether `device` feeds `member`, directly or not (`member` itself: the two wait on each
    /// other).
    private func isFed(_ member: DeviceID, by device: DeviceID, content: ContentID) -> Bool {
        guard let upstream = swarms[content]?[member]?.upstream else { return false }
        return upstreams(from: upstream, content: content).contains(device)
    }

    /// `device` was sent for `content` from `upstream`; a member already keeps what it holds.
    /// A member moved to the tail for lagging that `upstream` fed goes behind `device`, and
    /// those behind it with it, so they stay last.
    @discardableResult
    mutating func join(_ device: DeviceID, content: ContentID, upstream: Upstream, now: ContinuousClock.Instant) -> [Move] {
        let chunks = swarms[content]?[device]?.chunks ?? 0
        swarms[content, default: [:]][device] = Member(device: device, upstream: upstream, joined: now, chunks: chunks)
        memberships[device, default: []].insert(content)
        departed[content]?[device] = nil
        // Only behind a member: that is where `sources` puts a newcomer ahead of moved ones.
        guard case .device(let up) = upstream, let swarm = swarms[content], swarm[up] != nil else { return [] }
        let fedAlike = swarm.values.filter { $0.upstream == upstream && $0.device != device }
        guard fedAlike.count == 1, let last = fedAlike.first, let reason = last.movedFor else { return [] }
        return [place(last.device, content: content, behind: .device(device), reason: reason)]
    }

    /// What a device announced: content it now holds whole leaves its swarm (it is a holder),
    /// content it is getting updates its count and pace, and content it no longer mentions,
    /// past the patience, leaves. A hop into it that lags moves someone (`lagging`). A device
    /// that gained nothing behind a member lost since (not `usable`) takes that member's place;
    /// one that gained nothing fed, up the swarm, by itself goes behind a member `usable` that it
    /// does not feed, or to the origin.
    @discardableResult
    mutating func apply(_ announcement: HoldingsAnnouncement, now: ContinuousClock.Instant, usable: (DeviceID) -> Bool = { _ in true }) -> [Move] {
        let device = announcement.deviceId
        let partial = Dictionary((announcement.partial ?? []).map { ($0.contentId, $0.chunks) }, uniquingKeysWith: max)
        let whole = Set(announcement.contents)
        var moves: [Move] = []
        for content in memberships[device] ?? [] {
            guard let member = swarms[content]?[device] else { continue }
            if whole.contains(content) {
                leave(device, content: content)
            } else if let chunks = partial[content] {
                swarms[content]?[device]?.chunks = chunks
                swarms[content]?[device]?.pace.observe(chunks: chunks, at: now)
                if case .device(let up) = member.upstream, swarms[content]?[up] != nil,
                   let pace = swarms[content]?[device]?.pace.perSecond, pace > uplinks[content, default: UplinkEvidence()].fastestHop {
                    uplinks[content, default: UplinkEvidence()].fastestHop = pace
                }
                moves += lagging(device, content: content, now: now)
                // Gaining nothing where it still is, it waits for what will not come.
                guard chunks <= member.chunks, swarms[content]?[device]?.upstream == member.upstream else { continue }
                if case .device(let up) = member.upstream, let gone = departed[content]?[up], !usable(up) {
                    moves.append(place(device, content: content, behind: replacing(gone, for: device, content: content, usable: usable),
                                       reason: .upstreamLost))
                } else if isFed(device, by: device, content: content) {
                    moves.append(place(device, content: content, behind: best(for: device, content: content, usable: usable), reason: .upstreamMoved))
                }
            } else if now - member.joined > Self.patience {
                leave(device, content: content)
            }
        }
        return moves
    }

    /// Where a follower of a lost member goes: to the upstream that member had (past any lost
    /// too), the origin, a member or a holder still `usable`; otherwise to the best source.
    private func replacing(_ gone: Upstream, for device: DeviceID, content: ContentID, usable: (DeviceID) -> Bool) -> Upstream {
        var next = gone
        var steps = 0
        while case .device(let up) = next, !usable(up), let further = departed[content]?[up], steps <= departed[content]?.count ?? 0 {
            next = further
            steps += 1
        }
        switch next {
        case .origin:
            return .origin
        case .device(let up):
            return usable(up) && !isFed(up, by: device, content: content) ? next : best(for: device, content: content, usable: usable)
        }
    }

    /// The first of `sources`, or the origin.
    private func best(for device: DeviceID, content: ContentID, usable: (DeviceID) -> Bool) -> Upstream {
        sources(for: device, content: content, usable: usable).first.map { .device($0) } ?? .origin
    }

    /// The hop from `device`'s upstream, a member too, lags when `device` is well behind where
    /// the upstream is reckoned to be and gains at well under its pace, two announcements
    /// running. Either end may be slow: the receiver's downlink or the upstream's uplink, which
    /// announcements cannot tell apart. So the receiver goes to the tail first (slow, it holds
    /// up only itself there), and when the upstream's next follower falls behind it too, the
    /// upstream goes to the tail instead. The upstream goes at once when it is itself gaining at
    /// well under its own upstream's pace: a saturated uplink also delays the acknowledgements
    /// of what a device receives, so a slow uplink slows its own download too (measured in the
    /// bench), while a receiver's slow downlink leaves its upstream's pace alone. A tail that
    /// lags holds up nobody and stays.
    private mutating func lagging(_ device: DeviceID, content: ContentID, now: ContinuousClock.Instant) -> [Move] {
        guard let member = swarms[content]?[device], case .device(let up) = member.upstream, let upstream = swarms[content]?[up],
              let ahead = upstream.pace.chunks(at: now)
        else { return [] }
        let lags = ahead - Double(member.chunks) >= Double(lag.chunks) && gainsSlowly(member, content: content)
        let strikes = lags ? member.strikes + 1 : 0
        swarms[content]?[device]?.strikes = strikes >= 2 ? 0 : strikes
        guard strikes >= 2 else { return [] }
        if upstream.laggedBehind > 0 || gainsSlowly(upstream, content: content) {
            let evidence = uplinks[content, default: UplinkEvidence()]
            let slowerThanSeen = member.pace.perSecond.map { $0 < Double(lag.percent) / 100 * evidence.fastestHop } ?? false
            // As slow as every hop seen after a slow uplink was moved: the uplinks are all alike.
            guard !evidence.movedOne || slowerThanSeen else { return [] }
            let moves = moveToTail(up, content: content, reason: .slowUplink)
            if !moves.isEmpty { uplinks[content, default: UplinkEvidence()].movedOne = true }
            return moves
        }
        let moves = moveToTail(device, content: content, reason: .fellBehind)
        if !moves.isEmpty { swarms[content]?[up]?.laggedBehind += 1 }
        return moves
    }

    /// Whether `member` gains chunks at under the lag rule's share of its upstream's pace, both
    /// measured (its upstream a member too).
    private func gainsSlowly(_ member: Member, content: ContentID) -> Bool {
        guard case .device(let up) = member.upstream, let upstreamPace = swarms[content]?[up]?.pace.perSecond,
              let pace = member.pace.perSecond else { return false }
        return pace < Double(lag.percent) / 100 * upstreamPace
    }

    /// `device`'s followers take its place behind its upstream, and it goes behind the tail:
    /// the free member (feeding fewer than `fanOut`) holding most, not one moved before if any
    /// other is free. One the origin feeds stays there: the origin feeds any number, and behind
    /// the tail it would wait for devices holding less than it does. Nothing moves if it feeds
    /// nobody.
    private mutating func moveToTail(_ device: DeviceID, content: ContentID, reason: SourceChange.Reason) -> [Move] {
        guard let swarm = swarms[content], let moved = swarm[device] else { return [] }
        let followers = swarm.values.filter { $0.upstream == .device(device) }.map(\.device).sorted()
        guard !followers.isEmpty else { return [] }
        var moves = followers.map { place($0, content: content, behind: moved.upstream, reason: .upstreamMoved) }
        let members = swarms[content, default: [:]].values
        var feeding: [DeviceID: Int] = [:]
        for member in members {
            if case .device(let up) = member.upstream { feeding[up, default: 0] += 1 }
        }
        let tail = members.filter { $0.device != device && (feeding[$0.device] ?? 0) < fanOut }.min(by: Self.tailFirst)
        swarms[content]?[device]?.movedFor = reason
        if moved.upstream != .origin, let tail { moves.append(place(device, content: content, behind: .device(tail.device), reason: reason)) }
        return moves
    }

    /// `device` gets the rest from `upstream` from now on, its pace measured afresh there; the
    /// broker tries `upstream` and then its own upstreams in turn.
    private mutating func place(_ device: DeviceID, content: ContentID, behind upstream: Upstream, reason: SourceChange.Reason) -> Move {
        swarms[content]?[device]?.upstream = upstream
        swarms[content]?[device]?.pace = .unknown
        return Move(device: device, content: content, sources: Array(upstreams(from: upstream, content: content).prefix(PeerSelection.maxSources)),
                    reason: reason)
    }

    /// For `ferry status` and the status socket: each swarm (at most 50, largest first) with
    /// its members in the order they joined (at most 200 each), who feeds each, how many chunks
    /// each said it holds and how fast they grow, and whether it was moved for lagging.
    var status: JSONValue {
        let largest = swarms.sorted { $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.key < $1.key }.prefix(50)
        return .array(largest.map { content, _ in
            let members = self.members(of: content)
            return .object(["contentId": .string(content.hex), "devices": JSONValue(members.count),
                            "members": .array(members.prefix(200).map { member in
                                let upstream = switch member.upstream {
                                case .origin: "origin"
                                case .device(let device): device.rawValue
                                }
                                return .object(["deviceId": .string(member.device.rawValue), "from": .string(upstream),
                                                "chunks": JSONValue(member.chunks), "perSecond": member.pace.perSecond.map { .number(($0 * 10).rounded() / 10) } ?? .null,
                                                "moved": .bool(member.demoted)])
                            })])
        })
    }

    /// Members past the patience whose device does not announce at all leave: nothing else
    /// would ever remove them.
    mutating func expire(now: ContinuousClock.Instant, announcing: (DeviceID) -> Bool) {
        for (content, swarm) in swarms {
            for member in swarm.values where now - member.joined > Self.patience && !announcing(member.device) {
                leave(member.device, content: content)
            }
        }
    }

    /// A device gone (announcements stopped, revoked): it leaves every swarm, and whoever it fed
    /// takes its place when it next gains nothing (`departed`).
    mutating func leave(_ device: DeviceID) {
        for content in memberships[device] ?? [] {
            if let member = swarms[content]?[device] { departed[content, default: [:]][device] = member.upstream }
            leave(device, content: content)
        }
    }

    mutating func withdraw(_ content: ContentID) {
        for device in Array(swarms[content]?.keys ?? [:].keys) { leave(device, content: content) }
    }

    /// Its followers keep their upstream until the broker re-paths them: they still hold
    /// what it sent.
    private mutating func leave(_ device: DeviceID, content: ContentID) {
        swarms[content]?[device] = nil
        if swarms[content]?.isEmpty == true {
            swarms[content] = nil
            uplinks[content] = nil
            departed[content] = nil
        }
        memberships[device]?.remove(content)
        if memberships[device]?.isEmpty == true { memberships[device] = nil }
    }
}
