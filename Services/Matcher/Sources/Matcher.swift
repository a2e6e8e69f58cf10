import FerryProtocol
import FerryService
import Foundation
import Logging
import Metrics
import ZeroMQ

public struct MatcherConfig: Sendable {
    public var bind: String
    public var holdingsBind: String
    public var broker: String
    public var eventsIn: String
    public var statusBind: String
    public var security: TransportSecurity
    public init(bind: String, holdingsBind: String, broker: String, eventsIn: String, statusBind: String, security: TransportSecurity = .off) {
        self.security = security
        self.bind = bind
        self.holdingsBind = holdingsBind
        self.broker = broker
        self.eventsIn = eventsIn
        self.statusBind = statusBind
    }
}

/// Peer matching: keeps the holdings index from announcements (SUB) and turns each request
/// (PULL) into a decision for the broker (PUSH).
public enum Matcher {
    public static func service(_ config: MatcherConfig, logger: Logger) -> LoopService {
        LoopService(name: "matcher") { stop in try run(config, logger: logger, stop: stop) }
    }

    static func run(_ config: MatcherConfig, logger: Logger, stop: StopSignal) throws {
        let context = try Context()
        let gate = try config.security.gate(context: context, service: "matcher", logger: logger)
        defer { gate?.close() }
        let requests = try context.socket(.pull)
        try config.security.bind(requests, config.bind, as: Topology.matcher)
        // Agents only connect outward, so the matcher binds and their PUB sockets connect.
        let holdings = try context.socket(.sub)
        try holdings.subscribe(HoldingsAnnouncement.topic)
        try config.security.bind(holdings, config.holdingsBind, as: Topology.holdings)
        let broker = try context.socket(.push)
        try broker.setSendHighWaterMark(10_000)
        try config.security.connect(broker, config.broker, to: .broker)
        let events = try EventPublisher(context: context, endpoint: config.eventsIn, publisher: "matcher", logger: logger,
                                        security: config.security, gate: gate)
        let status = try StatusResponder(context: context, bind: config.statusBind)
        let startedAt = Timestamp.now()
        var matched = 0
        logger.info("matcher up", metadata: ["bind": "\(config.bind)", "holdings": "\(config.holdingsBind)", "broker": "\(config.broker)"])

        var index = HoldingsIndex()
        let peerMatches = Counter(label: "ferry_matches_total", dimensions: [("result", "peer")])
        let originMatches = Counter(label: "ferry_matches_total", dimensions: [("result", "origin")])
        let holders = Gauge(label: "ferry_matcher_devices")
        var dropped = 0
        while !stop.isRequested {
            var poller = Poller()
            poller.add(requests)
            poller.add(holdings)
            try poller.poll(timeoutMilliseconds: 200)
            events.flush()
            status.answer {
                StatusReport(service: "matcher", id: "matcher", startedAt: startedAt, counters: [
                    "devices": JSONValue(index.holders.count), "matched": JSONValue(matched), "dropped": JSONValue(dropped)])
            }

            while let frames = try holdings.receive(dontWait: true) {
                do {
                    guard frames.count == 4 else { throw WireError.malformed("announcement must be [topic, version, kind, body]") }
                    let announcement = try HoldingsAnnouncement.decode(frames: frames.dropFirst().map(\.data))
                    if config.security.isOn, frames[0].peer != .device(announcement.deviceId.rawValue) {
                        // A device announces for itself only: the key it connected with says who it is.
                        throw WireError.invalid("announcement for \(announcement.deviceId) from \(frames[0].peer?.userId ?? "no key")")
                    }
                    if index.apply(announcement) == .changed {
                        events.publish(.holdingsUpdated, [
                            "deviceId": .string(announcement.deviceId.rawValue), "serving": .bool(announcement.serving),
                            "contents": .array(announcement.contents.map { .string($0.hex) })])
                    }
                } catch {
                    dropped += 1
                    logger.debug("announcement dropped: \(error)")
                    if dropped.isMultiple(of: 100) || dropped == 1 {
                        events.publish(.messageDropped, ["service": "matcher", "reason": .string("\(error)"), "dropped": JSONValue(dropped)])
                    }
                }
            }
            holders.record(index.holders.count)
            for device in index.expire() {
                events.publish(.deviceLost, ["deviceId": .string(device.rawValue), "reason": "announcements-stopped"])
            }

            while let frames = try requests.receive(dontWait: true) {
                if frames.count == 3, frames[1].string == SenderSilent.kind {
                    do {
                        let silent = try SenderSilent.decode(frames: frames.map(\.data))
                        // Only the broker saw the session: nobody else may get a device passed over.
                        if config.security.isOn, frames[0].peer != .fleet(FleetRole.broker.rawValue) {
                            throw WireError.invalid("sender.silent from \(frames[0].peer?.userId ?? "no key"), not the broker")
                        }
                        if index.noteSilent(silent.deviceId) {
                            logger.warning("sender excluded: it sent nothing in \(SenderSilent.limit) sessions", metadata: ["device.id": "\(silent.deviceId)"])
                            events.publish(.senderExcluded, requestId: silent.requestId, [
                                "deviceId": .string(silent.deviceId.rawValue), "silentSessions": JSONValue(SenderSilent.limit),
                                "excludedForMilliseconds": JSONValue(SenderSilent.exclusionMilliseconds)])
                        }
                    } catch {
                        dropped += 1
                        events.publish(.messageDropped, ["service": "matcher", "reason": .string("\(error)"), "kind": .string(SenderSilent.kind)])
                    }
                    continue
                }
                if let notice = PipelineNotice(frames: frames.map(\.data)) {
                    switch notice {
                    case .withdrawn(let withdrawal):
                        index.withdraw(withdrawal.contentId)
                    case .revoked(let revocation):
                        index.revoke(revocation.deviceId)
                        gate?.forget(party: revocation.deviceId.rawValue)
                        events.publish(.deviceLost, ["deviceId": .string(revocation.deviceId.rawValue), "reason": "revoked"])
                    }
                    _ = try broker.send(try notice.frames(), dontWait: true)
                    continue
                }
                let match: MatchRequest
                do {
                    match = try MatchRequest.decode(frames: frames.map(\.data))
                } catch {
                    dropped += 1
                    events.publish(.matchFailed, ["reason": .string("\(error)")])
                    continue
                }
                let request = match.request
                matched += 1
                let decision: MatchDecision
                let zone = index.holders[request.deviceId]?.zone
                switch PeerSelection.decide(for: request, requesterZone: zone, index: index) {
                case .peers(let sources):
                    // A retry reuses the broker's earlier answer, so it adds no load to the holder.
                    if match.attempt == 1 { index.noteAssigned(sources[0]) }
                    peerMatches.increment()
                    decision = MatchDecision(match: match, sources: sources)
                    events.publish(.matchFound, requestId: request.requestId, [
                        "source": .string(sources[0].rawValue), "candidates": .array(sources.map { .string($0.rawValue) }),
                        "deviceId": .string(request.deviceId.rawValue), "contentId": .string(request.content.contentId.hex)])
                case .origin(let reason):
                    decision = MatchDecision(match: match, sources: [], reason: reason)
                    originMatches.increment()
                    events.publish(.matchNone, requestId: request.requestId, [
                        "reason": .string(reason), "deviceId": .string(request.deviceId.rawValue),
                        "contentId": .string(request.content.contentId.hex)])
                }
                if try !broker.send(try decision.frames(), dontWait: true) {
                    events.publish(.matchFailed, requestId: request.requestId, ["reason": "broker-queue-full"])
                }
            }
        }
        logger.info("matcher stopped", metadata: ["devices": "\(index.holders.count)", "dropped": "\(dropped)"])
    }
}
