import FerryProtocol
import Foundation

/// Intake's memory of request ids. A request id names one request: a retry (same id, same
/// device and content) is the same request and keeps its trace id; the same id for another
/// device or content is a conflict and refused. Bounded: the oldest entries are forgotten
/// first once `capacity` is reached (the broker's and reporter's own idempotency still hold).
public struct RequestRegistry: Sendable {
    public enum Verdict: Equatable, Sendable {
        case new(traceId: String)
        case retry(traceId: String, attempt: Int)
        case conflict(String)
    }

    struct Entry: Sendable {
        var deviceId: DeviceID
        var contentId: ContentID
        var traceId: String
        var attempts: Int
    }

    private var entries: [RequestID: Entry] = [:]
    private var order: [RequestID] = []
    private var orderStart = 0
    public let capacity: Int

    public init(capacity: Int = 200_000) { self.capacity = capacity }

    public var count: Int { entries.count }

    public mutating func admit(_ request: DownloadRequest) -> Verdict {
        if var entry = entries[request.requestId] {
            guard entry.deviceId == request.deviceId, entry.contentId == request.content.contentId else {
                return .conflict("request id \(request.requestId) was already used for device \(entry.deviceId) and content \(entry.contentId.short)…")
            }
            entry.attempts += 1
            entries[request.requestId] = entry
            return .retry(traceId: entry.traceId, attempt: entry.attempts)
        }
        let traceId = "trace-" + String(UUID().uuidString.lowercased().prefix(13))
        entries[request.requestId] = Entry(deviceId: request.deviceId, contentId: request.content.contentId, traceId: traceId, attempts: 1)
        order.append(request.requestId)
        while entries.count > capacity, orderStart < order.count {
            entries[order[orderStart]] = nil
            orderStart += 1
        }
        if orderStart > capacity {
            order.removeFirst(orderStart)
            orderStart = 0
        }
        return .new(traceId: traceId)
    }
}
