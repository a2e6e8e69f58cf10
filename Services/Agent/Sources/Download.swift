import FerryContent
import FerryProtocol
import FerryService
import FerryTrust
import Foundation

/// One content id this device is getting: from which sources, how far along, and who is
/// waiting for it. Owned by the agent's loop thread.
final class Download {
    enum Plan {
        case session(SessionOpen)
        case origin(OriginDirective)
    }

    let requestId: RequestID
    let contentId: ContentID
    var manifest: Manifest?
    var contentKey: ContentKey?
    var partial: PartialContent?
    /// Local clients (`ferry get`) waiting, with where each wants a copy.
    var waiters: [(client: Data, output: String?)] = []
    /// Plans that arrived before the manifest did.
    var parked: [Plan] = []
    var receiving: ReceivingLink?
    var originFetch: StopSignal?
    /// Set while the broker finds a new path after a session broke; past it, the origin serves.
    var newPathDeadline: ContinuousClock.Instant?
    /// Payload bytes that arrived from peers, verified or not: beside `peerBytes` it shows
    /// what a broken session cost in bytes sent again.
    var peerPayloadBytes: UInt64 = 0
    var planReceived = false
    let startedAt = Timestamp.now()
    let startClock = ContinuousClock.now
    var planDeadline: ContinuousClock.Instant
    var nextRetry: ContinuousClock.Instant
    var localBytes: UInt64 = 0
    var peerSources: [SourceBytes] = []
    var originBytes: UInt64 = 0
    var source = "pending"
    var lastProgress = ContinuousClock.now
    var lastMilestone = 0

    init(requestId: RequestID, contentId: ContentID, planDeadline: ContinuousClock.Instant) {
        self.requestId = requestId
        self.contentId = contentId
        self.planDeadline = planDeadline
        nextRetry = .now + .seconds(5)
    }

    var size: UInt64 { manifest?.size ?? 0 }
    var peerBytes: UInt64 { peerSources.reduce(0) { $0 + $1.bytes } }
    var receivedBytes: UInt64 { localBytes + peerBytes + originBytes + (receiving?.verifiedBytes ?? 0) }

    var sources: [SourceBytes] {
        var all = peerSources
        if originBytes > 0 { all.append(SourceBytes(kind: .origin, bytes: originBytes)) }
        if localBytes > 0 { all.append(SourceBytes(kind: .local, bytes: localBytes)) }
        return all
    }
}
