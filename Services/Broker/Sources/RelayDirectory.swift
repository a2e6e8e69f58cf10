import FerryProtocol
import Foundation

/// The relays the broker knows: where each is reached, how loaded it is, and whether it is
/// still heartbeating.
public struct RelayDirectory: Sendable {
    public struct Relay: Sendable, Equatable {
        public var id: RelayID
        public var endpoint: String
        public var zone: String?
        /// Base64 CURVE public key the relay connected with; devices connect to it expecting it.
        public var key: String?
        public var sessions: Int
        public var reportedLoad: Int
        public var lastSeen: ContinuousClock.Instant
        /// Shutting down: it finishes its sessions but gets no new ones.
        public var draining = false
        /// The device whose host it runs on and whose sessions alone it carries.
        public var forwardsFor: DeviceID?
    }

    public private(set) var relays: [RelayID: Relay] = [:]

    public init() {}

    /// Returns true when the relay is new (or came back under a new endpoint).
    @discardableResult
    public mutating func register(_ id: RelayID, endpoint: String, zone: String?, key: String? = nil, forwardsFor: DeviceID? = nil,
                                  now: ContinuousClock.Instant = .now) -> Bool {
        if var relay = relays[id], relay.endpoint == endpoint, relay.key == key, relay.forwardsFor == forwardsFor {
            relay.lastSeen = now
            relay.zone = zone
            relays[id] = relay
            return false
        }
        relays[id] = Relay(id: id, endpoint: endpoint, zone: zone, key: key, sessions: 0, reportedLoad: 0, lastSeen: now, forwardsFor: forwardsFor)
        return true
    }

    public mutating func heard(_ id: RelayID, load: Int? = nil, now: ContinuousClock.Instant = .now) {
        relays[id]?.lastSeen = now
        if let load { relays[id]?.reportedLoad = load }
    }

    public mutating func markDraining(_ id: RelayID) {
        relays[id]?.draining = true
    }

    public mutating func adjustSessions(_ id: RelayID, by delta: Int) {
        if let sessions = relays[id]?.sessions { relays[id]?.sessions = max(0, sessions + delta) }
    }

    public mutating func remove(_ id: RelayID) -> Relay? { relays.removeValue(forKey: id) }

    public mutating func expire(silentFor limit: Duration, now: ContinuousClock.Instant = .now) -> [Relay] {
        let lost = relays.values.filter { now - $0.lastSeen > limit }
        for relay in lost { relays[relay.id] = nil }
        return lost
    }

    /// The relay for a session `sender` sends: its own forwarding relay (`forwarder`, which it
    /// named and which says it forwards for it), whose host's uplink carries the bytes anyway;
    /// otherwise the live fleet relay with the fewest sessions (the broker's own count, which
    /// is current, rather than the relay's last heartbeat), preferring one in `zone`; ties by
    /// id. A relay that forwards for a device never carries anyone else's sessions: they would
    /// take that device's uplink.
    public func choose(zone: String? = nil, excluding: Set<RelayID> = [], sender: DeviceID? = nil, forwarder: RelayID? = nil) -> Relay? {
        if let sender, let forwarder, let own = relays[forwarder], own.forwardsFor == sender, !own.draining, !excluding.contains(forwarder) {
            return own
        }
        return relays.values.filter { !excluding.contains($0.id) && !$0.draining && $0.forwardsFor == nil }.min { a, b in
            let aLoad = max(a.sessions, a.reportedLoad), bLoad = max(b.sessions, b.reportedLoad)
            if aLoad != bLoad { return aLoad < bLoad }
            let aLocal = zone != nil && a.zone == zone, bLocal = zone != nil && b.zone == zone
            if aLocal != bLocal { return aLocal }
            return a.id < b.id
        }
    }
}
