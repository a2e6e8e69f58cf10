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
        let context = try Context()
        let gate = try config.security.gate(context: context, service: "eventbus", logger: logger)
        defer { gate?.close() }
        let publishers = try context.socket(.xsub)
        try publishers.setReceiveHighWaterMark(100_000)
        try config.security.bind(publishers, config.publishersBind, as: Topology.eventsIn)
        // Subscribe to everything here rather than pass subscribers' subscriptions upstream: a
        // publisher then sends every event from the moment it connects, whether or not anyone
        // listens yet, and the XPUB filters per subscriber. Events are few and small.
        try publishers.send([Data([1])])
        let subscribers = try context.socket(.xpub)
        // A slow subscriber loses events past this queue; it never slows the publishers.
        try subscribers.setSendHighWaterMark(100_000)
        // Without CURVE for subscribers it is readable without keys, as documented: bind it
        // where only the intended readers reach.
        try config.security.bind(subscribers, config.subscribersBind, as: Topology.eventsOut, curveEvents: config.subscribersCurve)
        let status = try StatusResponder(context: context, bind: config.statusBind)
        let startedAt = Timestamp.now()
        logger.info("event bus up", metadata: ["publishers": "\(config.publishersBind)", "subscribers": "\(config.subscribersBind)"])

        var forwarded: UInt64 = 0, refused: UInt64 = 0, sequence: UInt64 = 0
        let forwardedMetric = Counter(label: "ferry_events_forwarded_total")
        let refusedMetric = Counter(label: "ferry_events_refused_total")
        while !stop.isRequested {
            var poller = Poller()
            let fromPublishers = poller.add(publishers)
            let fromSubscribers = poller.add(subscribers)
            try poller.poll(timeoutMilliseconds: 200)
            status.answer {
                StatusReport(service: "eventbus", id: "eventbus", startedAt: startedAt,
                             counters: ["forwarded": JSONValue(forwarded), "refused": JSONValue(refused)])
            }
            // The bus is its own publisher of the keys it turned away.
            for refusal in gate?.takeRefusals() ?? [] {
                sequence += 1
                let event = FerryEvent(topic: EventTopic.transportRefused.rawValue, time: Timestamp.now(), publisher: "eventbus",
                                       seq: sequence, requestId: nil, sessionId: nil, data: refusal.eventData)
                if let frames = try? event.frames { try subscribers.send(frames, dontWait: true) }
            }
            if poller.isReadable(fromPublishers) {
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
            }
            if poller.isReadable(fromSubscribers) {
                // Subscribers' (un)subscriptions: the XPUB applies them itself; nothing to pass on.
                while try subscribers.receive(dontWait: true) != nil {}
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
