import Foundation

// The local control dialog between `ferry` and a device's agent: the CLI's DEALER to the
// agent's ROUTER on a loopback or ipc endpoint. Never exposed to the network.

/// Ask the agent to get content, and optionally copy it to `output` when verified.
public struct GetCommand: WireMessage {
    public static let kind = "get"
    public var contentId: ContentID
    public var output: String?
    public init(contentId: ContentID, output: String?) {
        self.contentId = contentId
        self.output = output
    }
}

/// Streamed while a `get` runs.
public struct GetProgress: WireMessage {
    public static let kind = "get.progress"
    public var requestId: RequestID
    public var receivedBytes: UInt64
    public var totalBytes: UInt64
    /// "peer:<device> via <relay>" or "origin".
    public var source: String
    public init(requestId: RequestID, receivedBytes: UInt64, totalBytes: UInt64, source: String) {
        self.requestId = requestId
        self.receivedBytes = receivedBytes
        self.totalBytes = totalBytes
        self.source = source
    }
}

/// The end of a `get`.
public struct GetResult: WireMessage {
    public static let kind = "get.result"
    public var requestId: RequestID?
    public var contentId: ContentID
    public var ok: Bool
    public var error: String?
    public var path: String?
    public var sources: [SourceBytes]
    public var seconds: Double
    public init(requestId: RequestID?, contentId: ContentID, ok: Bool, error: String?, path: String?, sources: [SourceBytes], seconds: Double) {
        self.requestId = requestId
        self.contentId = contentId
        self.ok = ok
        self.error = error
        self.path = path
        self.sources = sources
        self.seconds = seconds
    }
}

/// A probe any service with a ROUTER answers (relay, broker, agent): who it is and its counters.
public struct StatusQuery: WireMessage {
    public static let kind = "status.query"
    public init() {}
}

public struct StatusReport: WireMessage {
    public static let kind = "status.report"
    public var service: String
    public var id: String
    public var startedAt: String
    public var counters: [String: JSONValue]
    public init(service: String, id: String, startedAt: String, counters: [String: JSONValue]) {
        self.service = service
        self.id = id
        self.startedAt = startedAt
        self.counters = counters
    }
}
