import FerryProtocol
import FerryService
import Foundation
import Logging
import Metrics
import ZeroMQ

public struct IntakeConfig: Sendable {
    public var bind: String
    public var matcher: String
    public var eventsIn: String
    public var statusBind: String
    /// Servers outside the fleet are let in when their keys are on its allow list.
    public var security: TransportSecurity
    public init(bind: String, matcher: String, eventsIn: String, statusBind: String, security: TransportSecurity = .off) {
        self.security = security
        self.bind = bind
        self.matcher = matcher
        self.eventsIn = eventsIn
        self.statusBind = statusBind
    }
}

/// Step (a): PULLs download requests from servers, refuses what is malformed with a
/// `request.rejected` event (never a crash), recognises retries, and PUSHes the rest to matching.
public enum Intake {
    public static func service(_ config: IntakeConfig, logger: Logger) -> LoopService {
        LoopService(name: "intake") { stop in try run(config, logger: logger, stop: stop) }
    }

    static func run(_ config: IntakeConfig, logger: Logger, stop: StopSignal) throws {
        let context = try Context()
        let gate = try config.security.gate(context: context, service: "intake", logger: logger)
        defer { gate?.close() }
        let requests = try context.socket(.pull)
        try config.security.bind(requests, config.bind, as: Topology.intake)
        let matcher = try context.socket(.push)
        try matcher.setSendHighWaterMark(10_000)
        try config.security.connect(matcher, config.matcher, to: .matcher)
        let events = try EventPublisher(context: context, endpoint: config.eventsIn, publisher: "intake", logger: logger,
                                        security: config.security, gate: gate)
        let status = try StatusResponder(context: context, bind: config.statusBind)
        let startedAt = Timestamp.now()
        logger.info("intake up", metadata: ["bind": "\(config.bind)", "matcher": "\(config.matcher)"])

        var registry = RequestRegistry()
        // Withdrawn content gets no new requests, whichever server asks.
        var withdrawn = Set<ContentID>()
        var received = 0, rejected = 0
        let accepted = Counter(label: "ferry_intake_requests_total", dimensions: [("outcome", "accepted")])
        let retried = Counter(label: "ferry_intake_requests_total", dimensions: [("outcome", "retried")])
        func refused(_ reason: String) { Counter(label: "ferry_intake_requests_total", dimensions: [("outcome", "rejected"), ("reason", reason)]).increment() }
        while !stop.isRequested {
            var poller = Poller()
            poller.add(requests)
            try poller.poll(timeoutMilliseconds: 200)
            events.flush()
            status.answer {
                StatusReport(service: "intake", id: "intake", startedAt: startedAt, counters: [
                    "received": JSONValue(received), "rejected": JSONValue(rejected), "requestIdsRemembered": JSONValue(registry.count)])
            }
            while let frames = try requests.receive(dontWait: true) {
                received += 1
                if let notice = PipelineNotice(frames: frames.map(\.data)) {
                    // Withdrawals and revocations are the origin's word alone, not an outside server's.
                    if config.security.isOn, frames.first?.peer != .fleet(FleetRole.origin.rawValue) {
                        rejected += 1
                        refused("not-the-origin")
                        events.publish(.requestRejected, ["reason": "not-the-origin",
                                                          "detail": .string("a pipeline notice from \(frames.first?.peer?.userId ?? "?")")])
                        continue
                    }
                    if case .withdrawn(let withdrawal) = notice { withdrawn.insert(withdrawal.contentId) }
                    _ = try matcher.send(try notice.frames(), dontWait: true)
                    continue
                }
                let request: DownloadRequest
                do {
                    request = try DownloadRequest.decode(frames: frames.map(\.data))
                } catch {
                    rejected += 1
                    let wire = error as? WireError
                    refused(wire?.reason ?? "malformed")
                    logger.warning("request rejected: \(error)")
                    events.publish(.requestRejected, requestId: Self.bestEffortRequestId(frames), [
                        "reason": .string(wire?.reason ?? "malformed"), "detail": .string("\(error)")])
                    continue
                }
                if withdrawn.contains(request.content.contentId) {
                    rejected += 1
                    refused("withdrawn")
                    events.publish(.requestRejected, requestId: request.requestId, ["reason": "withdrawn", "contentId": .string(request.content.contentId.hex)])
                    continue
                }
                let verdict = registry.admit(request)
                let match: MatchRequest
                switch verdict {
                case .conflict(let detail):
                    rejected += 1
                    refused("request-id-conflict")
                    events.publish(.requestRejected, requestId: request.requestId, ["reason": "request-id-conflict", "detail": .string(detail)])
                    continue
                case .new(let traceId):
                    match = MatchRequest(request: request, traceId: traceId, attempt: 1)
                    accepted.increment()
                    events.publish(.requestReceived, requestId: request.requestId, [
                        "deviceId": .string(request.deviceId.rawValue), "contentId": .string(request.content.contentId.hex),
                        "size": JSONValue(request.content.size), "server": .string(request.server), "traceId": .string(traceId)])
                case .retry(let traceId, let attempt):
                    match = MatchRequest(request: request, traceId: traceId, attempt: attempt)
                    retried.increment()
                    events.publish(.requestRetried, requestId: request.requestId, [
                        "deviceId": .string(request.deviceId.rawValue), "attempt": JSONValue(attempt), "traceId": .string(traceId)])
                }
                if try !matcher.send(try match.frames(), dontWait: true) {
                    rejected += 1
                    events.publish(.requestRejected, requestId: request.requestId, ["reason": "pipeline-full", "detail": "matching is not keeping up"])
                }
            }
        }
        logger.info("intake stopped", metadata: ["received": "\(received)", "rejected": "\(rejected)"])
    }

    /// The request id of a message that failed to decode, when one can still be read from it,
    /// so the rejection event can name the request it concerns.
    static func bestEffortRequestId(_ frames: [Message]) -> RequestID? {
        guard frames.count == 3,
              let object = try? JSONSerialization.jsonObject(with: frames[2].data) as? [String: Any],
              let raw = object["requestId"] as? String else { return nil }
        return try? RequestID(raw)
    }
}
