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

    /// What a download works with once the origin has answered: the verified manifest, the
    /// content's key, and the partial file chunks are written into.
    struct Prepared {
        let manifest: Manifest
        let contentKey: ContentKey
        let partial: PartialContent
    }

    /// Where a download is. Every state it can be in, with what each holds.
    enum Stage {
        /// Asking the origin for the manifest and the content key (and placing the request);
        /// plans that arrive meanwhile wait here, in order.
        case preparing(parked: [Plan])
        /// Prepared, and no plan yet: Ferry's is awaited until `planDeadline`, then the origin.
        case awaitingPlan(Prepared)
        /// Receiving from a peer over a session.
        case receiving(Prepared, ReceivingLink)
        /// A session broke and the broker finds a new path until `until`; then the origin.
        case awaitingNewPath(Prepared, until: ContinuousClock.Instant)
        /// The origin serves what is missing; `StopSignal` ends its fetch.
        case fromOrigin(Prepared, StopSignal)
    }

    let requestId: RequestID
    let contentId: ContentID
    var stage = Stage.preparing(parked: [])
    /// Local clients (`ferry get`) waiting, with where each wants a copy.
    var waiters: [(client: Data, output: String?)] = []
    /// Payload bytes that arrived from peers, verified or not: beside `peerBytes` it shows
    /// what a broken session cost in bytes sent again.
    var peerPayloadBytes: UInt64 = 0
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

    var prepared: Prepared? {
        switch stage {
        case .preparing: nil
        case .awaitingPlan(let prepared), .receiving(let prepared, _), .awaitingNewPath(let prepared, _), .fromOrigin(let prepared, _): prepared
        }
    }

    var manifest: Manifest? { prepared?.manifest }
    var partial: PartialContent? { prepared?.partial }
    var receiving: ReceivingLink? { if case .receiving(_, let link) = stage { link } else { nil } }
    var originFetch: StopSignal? { if case .fromOrigin(_, let stop) = stage { stop } else { nil } }

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
