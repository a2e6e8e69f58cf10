import FerryProtocol
import Foundation

/// Which device holds which content, built from agents' announcements. An entry lives for
/// `expiryIntervals` of its device's own announcement interval, so a device that vanishes
/// without a word stops being matched.
public struct HoldingsIndex: Sendable {
    public struct Holder: Sendable, Equatable {
        public var deviceId: DeviceID
        public var sequence: UInt64
        public var contents: Set<ContentID>
        public var serving: Bool
        public var activeUploads: Int
        /// When sessions were last handed to this device. An announcement counts a session
        /// only once the device sends it, so one made in between (announcements are periodic)
        /// must not make a burst of requests all land on this holder: each counts until
        /// `assignmentSettles` has passed.
        public var assignedAt: [ContinuousClock.Instant]
        public var zone: String?
        public var expiresAt: ContinuousClock.Instant

        public var load: Int { activeUploads + assignedAt.count }
    }

    public static let expiryIntervals = 3
    /// About the time the broker takes to open a session and its sender to start it: an
    /// announcement that arrives later counts it (or, the session over, rightly doesn't). An
    /// assignment may be counted twice until then, which makes that holder look busier for a
    /// moment; counted longer, a holder whose short sessions are long over would be passed over.
    public static let assignmentSettles = Duration.milliseconds(500)

    public private(set) var holders: [DeviceID: Holder] = [:]
    private var byContent: [ContentID: Set<DeviceID>] = [:]
    /// Content the server withdrew: no device is a holder of it, whatever it announces.
    public private(set) var withdrawn: Set<ContentID> = []
    /// Devices the operator revoked: never a holder, whatever they announce.
    public private(set) var revoked: Set<DeviceID> = []
    /// What the broker said of each device chosen to send that sent nothing (`sender.silent`):
    /// how many such sessions so far, or, after `SenderSilent.limit`, until when it is passed over.
    public enum Silence: Equatable, Sendable {
        case sessions(Int)
        case excluded(until: ContinuousClock.Instant)
    }
    public private(set) var silent: [DeviceID: Silence] = [:]

    public init() {}

    public enum Applied: Equatable, Sendable {
        /// Out of order: an announcement with a higher sequence was already applied.
        case stale
        case unchanged
        /// The device is new or holds something else than before.
        case changed
    }

    @discardableResult
    public mutating func apply(_ announcement: HoldingsAnnouncement, now: ContinuousClock.Instant = .now) -> Applied {
        guard !revoked.contains(announcement.deviceId) else { return .stale }
        let previous = holders[announcement.deviceId]
        if let previous, previous.sequence >= announcement.sequence, previous.expiresAt > now {
            return .stale
        }
        remove(announcement.deviceId)
        let contents = Set(announcement.contents).subtracting(withdrawn)
        // Decoding refused intervals out of range; clamped again so no caller can overflow this.
        let range = HoldingsAnnouncement.intervalRange
        let lifetime = Duration.milliseconds(min(max(announcement.intervalMilliseconds, range.lowerBound), range.upperBound) * Self.expiryIntervals)
        let holder = Holder(deviceId: announcement.deviceId, sequence: announcement.sequence, contents: contents,
                            serving: announcement.serving, activeUploads: min(max(announcement.activeUploads, 0), HoldingsAnnouncement.maxActiveUploads),
                            assignedAt: previous?.assignedAt.filter { now - $0 < Self.assignmentSettles } ?? [],
                            zone: announcement.zone, expiresAt: now + lifetime)
        holders[announcement.deviceId] = holder
        for content in holder.contents { byContent[content, default: []].insert(announcement.deviceId) }
        return previous?.contents == holder.contents && previous?.serving == holder.serving ? .unchanged : .changed
    }

    /// Forgets devices whose announcements stopped; returns who was forgotten.
    public mutating func expire(now: ContinuousClock.Instant = .now) -> [DeviceID] {
        let gone = holders.values.filter { $0.expiresAt <= now }.map(\.deviceId)
        for device in gone { remove(device) }
        return gone
    }

    public mutating func withdraw(_ content: ContentID) {
        withdrawn.insert(content)
        for device in byContent.removeValue(forKey: content) ?? [] { holders[device]?.contents.remove(content) }
    }

    public mutating func revoke(_ device: DeviceID) {
        revoked.insert(device)
        remove(device)
    }

    /// The broker says `device` sent nothing in a session. True when that makes it excluded.
    public mutating func noteSilent(_ device: DeviceID, now: ContinuousClock.Instant = .now) -> Bool {
        let sessions: Int
        switch silent[device] {
        case .excluded(let until)? where until > now: return false  // already passed over
        case .sessions(let count)?: sessions = count + 1
        case .excluded?, nil: sessions = 1  // new, or its time served
        }
        if silent.count > 100_000 { silent = silent.filter { isExcluded($0.key, now: now) } }
        guard sessions >= SenderSilent.limit else {
            silent[device] = .sessions(sessions)
            return false
        }
        silent[device] = .excluded(until: now + .milliseconds(SenderSilent.exclusionMilliseconds))
        return true
    }

    public func isExcluded(_ device: DeviceID, now: ContinuousClock.Instant = .now) -> Bool {
        if case .excluded(let until)? = silent[device] { return until > now }
        return false
    }

    public mutating func noteAssigned(_ device: DeviceID, now: ContinuousClock.Instant = .now) {
        holders[device]?.assignedAt.append(now)
    }

    public func holders(of content: ContentID) -> [Holder] {
        (byContent[content] ?? []).compactMap { holders[$0] }
    }

    private mutating func remove(_ device: DeviceID) {
        guard let old = holders.removeValue(forKey: device) else { return }
        for content in old.contents {
            byContent[content]?.remove(device)
            if byContent[content]?.isEmpty == true { byContent[content] = nil }
        }
    }
}
