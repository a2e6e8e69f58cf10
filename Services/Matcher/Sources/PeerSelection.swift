import FerryProtocol
import Foundation

/// Step (b): can another device fulfil this request, and which? A holder qualifies if it holds
/// the whole content, is serving, is still announcing, is not the requester, and is not
/// excluded for sending nothing in sessions it was chosen for (`sender.silent`). Among those
/// the least loaded wins; ties go to the requester's zone, then to the device id so the
/// decision is reproducible.
public enum PeerSelection {
    public enum Decision: Equatable, Sendable {
        case peers([DeviceID])
        case origin(reason: String)
    }

    /// The most sources a decision lists for one path (a striped one lists one per stripe).
    public static let maxSources = 3

    public static func decide(for request: DownloadRequest, requesterZone: String? = nil, index: HoldingsIndex, limit: Int = maxSources,
                              now: ContinuousClock.Instant = .now) -> Decision {
        let holders = index.holders(of: request.content.contentId)
        if holders.isEmpty { return .origin(reason: OriginReason.noHolder.rawValue) }
        let eligible = holders.filter { $0.deviceId != request.deviceId && $0.serving && $0.expiresAt > now }
        let candidates = eligible.filter { !index.isExcluded($0.deviceId, now: now) }
        if candidates.isEmpty {
            if !eligible.isEmpty { return .origin(reason: OriginReason.everyHolderSilent.rawValue) }
            return .origin(reason: holders.allSatisfy { $0.deviceId == request.deviceId } ? OriginReason.onlyRequesterHolds.rawValue : OriginReason.noServingHolder.rawValue)
        }
        let ranked = candidates.sorted { a, b in
            if a.load != b.load { return a.load < b.load }
            let aLocal = requesterZone != nil && a.zone == requesterZone
            let bLocal = requesterZone != nil && b.zone == requesterZone
            if aLocal != bLocal { return aLocal }
            return a.deviceId < b.deviceId
        }
        return .peers(ranked.prefix(limit).map(\.deviceId))
    }
}
