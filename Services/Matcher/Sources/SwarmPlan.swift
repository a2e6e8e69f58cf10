import FerryProtocol
import Foundation

/// Step (b) for a crowd: who gets content that nobody holds whole yet from whom. Every device
/// the matcher sent for content is a member of that content's swarm, with one upstream: the
/// origin, a holder, or another member, whose chunks it gets as that member verifies them
/// (a device sends what it holds while it is still getting the rest). A new member goes behind
/// a member that feeds fewer than `fanOut` others, the one holding most first, so the origin
/// sends each byte once and the members form a pipelined chain. When a member leaves, the
/// one behind it gets a new source from the members ahead of it, never from its own followers,
/// which could only send what it already has.
///
/// The plan is the matcher's alone (docs/architecture.md): the broker turns its sources into
/// sessions and, when a path breaks, tries the next source the plan gave.
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
    }

    /// A member that neither holds nor announces the content this long after joining has
    /// given up on it (its request failed, or it restarted).
    static let patience = Duration.seconds(10)

    let fanOut: Int
    private(set) var swarms: [ContentID: [DeviceID: Member]] = [:]
    /// Which swarms each device is in, so an announcement touches only those.
    private var memberships: [DeviceID: Set<ContentID>] = [:]

    init(fanOut: Int = 1) { self.fanOut = max(1, fanOut) }

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
        let free = candidates.filter { (fedBy[$0.device]?.count ?? 0) < fanOut }.sorted { a, b in
            if a.chunks != b.chunks { return a.chunks > b.chunks }
            if a.joined != b.joined { return a.joined < b.joined }
            return a.device < b.device
        }
        guard let best = free.first else { return [] }
        var chosen = [best.device]
        var seen: Set<DeviceID> = [best.device]
        var next = best.upstream
        while chosen.count < limit, case .device(let up) = next, let member = swarm[up], seen.insert(up).inserted {
            if usableIds.contains(up) { chosen.append(up) }
            next = member.upstream
        }
        for member in free.dropFirst() where chosen.count < limit && seen.insert(member.device).inserted { chosen.append(member.device) }
        return chosen
    }

    /// How many members of `content`'s swarm `device` feeds: a holder's sessions as the plan
    /// made them, which its announcements show only once they start.
    func feeds(_ device: DeviceID, content: ContentID) -> Int {
        (swarms[content] ?? [:]).values.reduce(0) { $0 + ($1.upstream == .device(device) ? 1 : 0) }
    }

    /// `device` was sent for `content` from `upstream`; a member already keeps what it holds.
    mutating func join(_ device: DeviceID, content: ContentID, upstream: Upstream, now: ContinuousClock.Instant) {
        let chunks = swarms[content]?[device]?.chunks ?? 0
        swarms[content, default: [:]][device] = Member(device: device, upstream: upstream, joined: now, chunks: chunks)
        memberships[device, default: []].insert(content)
    }

    /// What a device announced: content it now holds whole leaves its swarm (it is a holder),
    /// content it is getting updates its count, and content it no longer mentions, past the
    /// patience, leaves.
    mutating func apply(_ announcement: HoldingsAnnouncement, now: ContinuousClock.Instant) {
        let partial = Dictionary((announcement.partial ?? []).map { ($0.contentId, $0.chunks) }, uniquingKeysWith: max)
        let whole = Set(announcement.contents)
        for content in memberships[announcement.deviceId] ?? [] {
            guard let member = swarms[content]?[announcement.deviceId] else { continue }
            if whole.contains(content) {
                leave(announcement.deviceId, content: content)
            } else if let chunks = partial[content] {
                swarms[content]?[announcement.deviceId]?.chunks = chunks
            } else if now - member.joined > Self.patience {
                leave(announcement.deviceId, content: content)
            }
        }
    }

    /// For `ferry status` and the status socket: each swarm (at most 50, largest first) with
    /// its members in the order they joined (at most 200 each), who feeds each, and how many
    /// chunks each said it holds.
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
                                                "chunks": JSONValue(member.chunks)])
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

    /// A device gone (announcements stopped, revoked): it leaves every swarm.
    mutating func leave(_ device: DeviceID) {
        for content in memberships[device] ?? [] { leave(device, content: content) }
    }

    mutating func withdraw(_ content: ContentID) {
        for device in Array(swarms[content]?.keys ?? [:].keys) { leave(device, content: content) }
    }

    /// Its followers keep their upstream until the broker re-paths them: they still hold
    /// what it sent.
    private mutating func leave(_ device: DeviceID, content: ContentID) {
        swarms[content]?[device] = nil
        if swarms[content]?.isEmpty == true { swarms[content] = nil }
        memberships[device]?.remove(content)
        if memberships[device]?.isEmpty == true { memberships[device] = nil }
    }
}
