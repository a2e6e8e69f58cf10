import FerryProtocol
import FerryService
import Foundation
import Logging
import Metrics
import ZeroMQ

public struct EventBusConfig: Sendable {
    /// Publishers (every service) connect their PUB sockets here.
    public var publishersBind: String
    /// Subscribers (`ferry events`, pyzmq, dashboards) connect SUB sockets here.
    public var subscribersBind: String
    public var statusBind: String
    public var security: TransportSecurity
    /// Subscribers must connect with CURVE too (a fleet key or one on the allow list).
    public var subscribersCurve: Bool

    public init(publishersBind: String, subscribersBind: String, statusBind: String, security: TransportSecurity = .off,
                subscribersCurve: Bool = false) {
        self.security = security
        self.subscribersCurve = subscribersCurve
        self.publishersBind = publishersBind
        self.subscribersBind = subscribersBind
        self.statusBind = statusBind
    }
}

/// The one address users subscribe to: an XSUB/XPUB proxy. It is a poll loop rather than
/// `zmq_proxy` so it stops cleanly on SIGTERM like every other service.
public enum EventBus {
    public static func service(_ config: EventBusConfig, logger: Logger) -> LoopService {
        LoopService(name: "eventbus") { stop in try run(config, logger: logger, stop: stop) }
    }

    static func run(_ config: EventBusConfig, logger: Logger, stop: StopSignal) throws {
        // The bus has no publisher of its own to connect: it is where events go.
        let shell = try ServiceShell(.eventbus, security: config.security, eventsIn: nil, statusBind: config.statusBind, logger: logger)
        let publishers = try shell.bind(.xsub, Topology.eventsIn, at: config.publishersBind) { try $0.setReceiveHighWaterMark(100_000) }
        // Subscribe to everything here rather than pass subscribers' subscriptions upstream: a
        // publisher then sends every event from the moment it connects, whether or not anyone
        // listens yet, and the XPUB filters per subscriber. Events are few and small.
        try publishers.send([Data([1])])
        // Without CURVE for subscribers it is readable without keys, as documented: bind it
        // where only the intended readers reach. A slow subscriber loses events past its
        // queue; it never slows the publishers.
        let subscribers = try shell.context.socket(.xpub)
        try subscribers.setSendHighWaterMark(100_000)
        try config.security.bind(subscribers, config.subscribersBind, as: Topology.eventsOut, curveEvents: config.subscribersCurve)
        logger.info("event bus up", metadata: ["publishers": "\(config.publishersBind)", "subscribers": "\(config.subscribersBind)"])

        var forwarded: UInt64 = 0, refused: UInt64 = 0, sequence: UInt64 = 0
        let forwardedMetric = Counter(label: "ferry_events_forwarded_total")
        let refusedMetric = Counter(label: "ferry_events_refused_total")
        try shell.run(until: stop, polling: [publishers, subscribers],
                      counters: { ["forwarded": JSONValue(forwarded), "refused": JSONValue(refused)] }) { socket in
            if socket === subscribers {
                // Subscribers' (un)subscriptions: the XPUB applies them itself; nothing to pass on.
                while try subscribers.receive(dontWait: true) != nil {}
                return
            }
            while let event = try publishers.receive(dontWait: true) {
                if config.security.isOn, !EventBus.mayPublish(event) {
                    refused += 1
                    refusedMetric.increment()
                    continue
                }
                try subscribers.send(messages: event, dontWait: true)
                forwarded += 1
                forwardedMetric.increment()
            }
        } tick: {
            // The bus is its own publisher of the keys it turned away.
            for refusal in shell.takeRefusals() {
                sequence += 1
                let event = FerryEvent(topic: EventTopic.transportRefused.rawValue, time: Timestamp.now(), publisher: "eventbus",
                                       seq: sequence, requestId: nil, sessionId: nil, data: refusal.event.fields)
                if let frames = try? event.frames { try subscribers.send(frames, dontWait: true) }
            }
        }
        logger.info("event bus stopped", metadata: ["forwarded": "\(forwarded)"])
    }
}

extension EventBus {
    /// With keys, an event must name the publisher its key belongs to: a service its role
    /// (`reporter.outbox` is the reporter's), a device `agent:ID`, a relay `relay:ID`; and its
    /// topic must be one that kind of publisher sends (`EventTopic.publishers`). An enrolled
    /// device can't speak for the broker, nor put `fulfilment.recorded` on the status page.
    /// The operator's key publishes as `operator.*`, and only topics that aren't Ferry's.
    static func mayPublish(_ frames: [Message]) -> Bool {
        guard let peer = frames.first?.peer, let event = try? FerryEvent.decode(frames: frames.map(\.data)) else { return false }
        let named: Bool
        switch peer {
        case .fleet(let role): named = event.publisher == role || event.publisher.hasPrefix(role + ".")
        case .device(let id): named = event.publisher == "agent:\(id)"
        case .relay(let id): named = event.publisher == "relay:\(id)"
        case .listed: named = false
        }
        guard named else { return false }
        guard let topic = EventTopic(rawValue: event.topic) else { return peer == .fleet("operator") }
        return EventPublisherKind(publisher: event.publisher).map(topic.publishers.contains) ?? false
    }
}
