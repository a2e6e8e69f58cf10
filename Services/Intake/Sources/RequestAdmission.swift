import FerryProtocol
import FerryService
import Foundation

/// Step (a)'s decisions: what intake does with each message a server pushes. A request that
/// decodes, isn't for withdrawn content and doesn't reuse another request's id goes on to
/// matching, stamped with its trace id (a retry keeps its first one); a pipeline notice
/// (withdrawal, revocation) goes on as it is, but with transport keys only from the origin;
/// everything else is refused with a reason. No I/O: the shell sends and publishes.
struct RequestAdmission {
    /// Pass these frames on to matching. `admitted`: the request it was, for its event;
    /// nil for a notice.
    struct Forward: Equatable {
        var frames: [Data]
        var admitted: Admitted?
    }

    /// A request admitted: `request.received` the first time, `request.retried` after.
    struct Admitted: Equatable {
        var requestId: RequestID
        var publication: Publication
        var topic: EventTopic { publication.topic }
    }

    /// Why intake refuses a message, spelled once: the `reason` of `request.rejected` and of
    /// `ferry_intake_requests_total{outcome="rejected"}`. docs/events.md lists each (a test checks).
    enum Refusal: String, CaseIterable {
        case malformed
        case unsupportedVersion = "unsupported-version"
        case unknownKind = "unknown-kind"
        case invalid
        case tooLarge = "too-large"
        case withdrawn
        case requestIdConflict = "request-id-conflict"
        case pipelineFull = "pipeline-full"
        case notTheOrigin = "not-the-origin"

        /// A message that doesn't decode, by the decoder's reason.
        init(_ error: any Error) {
            self = (error as? WireError).flatMap { Refusal(rawValue: $0.reason) } ?? .malformed
        }
    }

    /// A refusal: counted under `reason`, published as `request.rejected` (`event`).
    struct Rejection: Equatable, Error {
        var reason: Refusal
        var requestId: RequestID?
        var detail: String?
        var contentId: ContentID?

        var event: EventData.RequestRejected { EventData.RequestRejected(reason: reason.rawValue, detail: detail, contentId: contentId?.hex) }
    }

    /// With transport keys: withdrawals and revocations are the origin's word alone.
    let noticesOnlyFromTheOrigin: Bool
    private var registry = RequestRegistry()
    /// Withdrawn content gets no new requests, whichever server asks.
    private var withdrawn = Set<ContentID>()
    private(set) var received = 0
    private(set) var rejected = 0

    init(noticesOnlyFromTheOrigin: Bool, registry: RequestRegistry = RequestRegistry()) {
        self.noticesOnlyFromTheOrigin = noticesOnlyFromTheOrigin
        self.registry = registry
    }

    var counters: [String: JSONValue] {
        ["received": JSONValue(received), "rejected": JSONValue(rejected), "requestIdsRemembered": JSONValue(registry.count)]
    }

    /// `sender`: who the transport says sent it (nil on plain sockets).
    mutating func admit(_ frames: [Data], from sender: TransportPeer?) -> Result<Forward, Rejection> {
        received += 1
        if let notice = PipelineNotice(frames: frames) {
            if noticesOnlyFromTheOrigin, sender != .fleet(FleetRole.origin.rawValue) {
                return reject(.notTheOrigin, detail: "a pipeline notice from \(sender?.userId ?? "?")")
            }
            if case .withdrawn(let withdrawal) = notice { withdrawn.insert(withdrawal.contentId) }
            return .success(Forward(frames: frames, admitted: nil))
        }
        let request: DownloadRequest
        do {
            request = try DownloadRequest.decode(frames: frames)
        } catch {
            return reject(Refusal(error), requestId: Self.bestEffortRequestId(frames), detail: "\(error)")
        }
        if withdrawn.contains(request.content.contentId) {
            return reject(.withdrawn, requestId: request.requestId, contentId: request.content.contentId)
        }
        let match: MatchRequest, admitted: Admitted
        switch registry.admit(request) {
        case .conflict(let detail):
            return reject(.requestIdConflict, requestId: request.requestId, detail: detail)
        case .new(let traceId):
            match = MatchRequest(request: request, traceId: traceId, attempt: 1)
            admitted = Admitted(requestId: request.requestId, publication: Publication(EventData.RequestReceived(
                deviceId: request.deviceId.rawValue, contentId: request.content.contentId.hex, size: request.content.size, server: request.server,
                traceId: traceId), requestId: request.requestId))
        case .retry(let traceId, let attempt):
            match = MatchRequest(request: request, traceId: traceId, attempt: attempt)
            admitted = Admitted(requestId: request.requestId, publication: Publication(EventData.RequestRetried(
                deviceId: request.deviceId.rawValue, attempt: attempt, traceId: traceId), requestId: request.requestId))
        }
        do {
            return .success(Forward(frames: try match.frames(), admitted: admitted))
        } catch {
            return reject(.malformed, requestId: request.requestId, detail: "\(error)")
        }
    }

    /// Matching's queue was full: the admitted request is refused after all.
    mutating func matchingFull(_ requestId: RequestID) -> Rejection {
        rejected += 1
        return Rejection(reason: .pipelineFull, requestId: requestId, detail: "matching is not keeping up")
    }

    private mutating func reject(_ reason: Refusal, requestId: RequestID? = nil, detail: String? = nil,
                                 contentId: ContentID? = nil) -> Result<Forward, Rejection> {
        rejected += 1
        return .failure(Rejection(reason: reason, requestId: requestId, detail: detail, contentId: contentId))
    }

    /// The request id of a message that failed to decode, when one can still be read from it,
    /// so the rejection event can name the request it concerns.
    static func bestEffortRequestId(_ frames: [Data]) -> RequestID? {
        guard frames.count == 3,
              let object = try? JSONSerialization.jsonObject(with: frames[2]) as? [String: Any],
              let raw = object["requestId"] as? String else { return nil }
        return try? RequestID(raw)
    }
}
