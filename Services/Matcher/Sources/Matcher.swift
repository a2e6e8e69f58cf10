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
    public var lag: LagRule
    /// The most devices that send one request at once (`FERRY_STRIPES`).
    public var stripes: Int
    public init(bind: String, holdingsBind: String, broker: String, eventsIn: String, statusBind: String, security: TransportSecurity = .off,
                lag: LagRule = LagRule(), stripes: Int = Settings.stripes.defaultValue) {
        self.security = security
        self.stripes = stripes
        self.lag = lag
        self.bind = bind
        self.holdingsBind = holdingsBind
        self.broker = broker
        self.eventsIn = eventsIn
        self.statusBind = statusBind
    }
}

/// Peer matching: keeps the holdings index from announcements (SUB) and turns each request
/// (PULL) into a decision for the broker (PUSH). `Matching` decides; this moves messages.
public enum Matcher {
    public static func service(_ config: MatcherConfig, logger: Logger) -> LoopService {
        LoopService(name: "matcher") { stop in try run(config, logger: logger, stop: stop) }
    }

    static func run(_ config: MatcherConfig, logger: Logger, stop: StopSignal) throws {
        let shell = try ServiceShell(.matcher, security: config.security, eventsIn: config.eventsIn, statusBind: config.statusBind, logger: logger)
        let requests = try shell.bind(.pull, Topology.matcher, at: config.bind)
        // Agents only connect outward, so the matcher binds and their PUB sockets connect.
        let holdings = try shell.bind(.sub, Topology.holdings, at: config.holdingsBind) { try $0.subscribe(HoldingsAnnouncement.topic) }
        let broker = try shell.connect(.push, to: config.broker, .broker, queue: 10_000)
        logger.info("matcher up", metadata: ["bind": "\(config.bind)", "holdings": "\(config.holdingsBind)", "broker": "\(config.broker)"])

        var matching = Matching(checkSenders: config.security.isOn, lag: config.lag, stripes: config.stripes)
        let peerMatches = Counter(label: "ferry_matches_total", dimensions: [("result", "peer")])
        let originMatches = Counter(label: "ferry_matches_total", dimensions: [("result", "origin")])
        let holders = Gauge(label: "ferry_matcher_devices")
        func carryOut(_ effects: [Matching.Effect]) throws {
            for effect in effects {
                switch effect {
                case .toBroker(let frames, let requestId):
                    if try !broker.send(frames, dontWait: true), let requestId { shell.publish(matching.brokerFull(requestId)) }
                case .forget(let device):
                    shell.forget(party: device.rawValue)
                case .publish(let publication):
                    switch publication.topic {
                    case .matchFound: peerMatches.increment()
                    case .matchNone: originMatches.increment()
                    case .senderExcluded:
                        logger.warning("sender excluded: it sent nothing in \(SenderSilent.limit) sessions",
                                       metadata: ["device.id": "\(publication.fields["deviceId"]?.stringValue ?? "?")"])
                    case .messageDropped: logger.debug("message dropped: \(publication.fields["reason"]?.stringValue ?? "")")
                    default: break
                    }
                    shell.publish(publication)
                }
            }
        }
        // Holdings first: a request in the same pass as an announcement sees the holder.
        // Held requests are decided when their wait is over, not at the next 200 ms tick.
        func timeout() -> Int {
            guard let due = matching.nextRelease else { return 200 }
            return max(1, min(200, Int(((due - .now).inSeconds * 1000).rounded(.up))))
        }
        try shell.run(while: { !stop.isRequested }, polling: [holdings, requests], timeoutMilliseconds: timeout, counters: { matching.counters }) { socket in
            if socket === holdings {
                while let frames = try holdings.receive(dontWait: true) {
                    try carryOut(matching.announcement(frames.map(\.data), from: frames.first?.peer))
                }
            } else {
                while let frames = try requests.receive(dontWait: true) {
                    try carryOut(matching.pipeline(frames.map(\.data), from: frames.first?.peer))
                }
            }
        } tick: {
            try carryOut(matching.tick())
            holders.record(matching.index.holders.count)
        } finally: {
            try carryOut(matching.releaseAll())
            // What was just decided still reaches the broker.
            broker.close(lingerMilliseconds: 1000)
        }
        logger.info("matcher stopped", metadata: ["devices": "\(matching.index.holders.count)", "dropped": "\(matching.dropped)"])
    }
}
