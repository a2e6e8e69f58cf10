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

    public init(publishersBind: String, subscribersBind: String, statusBind: String) {
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
        let publishers = try context.socket(.xsub)
        try publishers.setReceiveHighWaterMark(100_000)
        try publishers.bind(config.publishersBind)
        // Subscribe to everything here rather than pass subscribers' subscriptions upstream: a
        // publisher then sends every event from the moment it connects, whether or not anyone
        // listens yet, and the XPUB filters per subscriber. Events are few and small.
        try publishers.send([Data([1])])
        let subscribers = try context.socket(.xpub)
        // A slow subscriber loses events past this queue; it never slows the publishers.
        try subscribers.setSendHighWaterMark(100_000)
        try subscribers.bind(config.subscribersBind)
        let status = try StatusResponder(context: context, bind: config.statusBind)
        let startedAt = Timestamp.now()
        logger.info("event bus up", metadata: ["publishers": "\(config.publishersBind)", "subscribers": "\(config.subscribersBind)"])

        var forwarded: UInt64 = 0
        let forwardedMetric = Counter(label: "ferry_events_forwarded_total")
        while !stop.isRequested {
            var poller = Poller()
            let fromPublishers = poller.add(publishers)
            let fromSubscribers = poller.add(subscribers)
            try poller.poll(timeoutMilliseconds: 200)
            status.answer { StatusReport(service: "eventbus", id: "eventbus", startedAt: startedAt, counters: ["forwarded": JSONValue(forwarded)]) }
            if poller.isReadable(fromPublishers) {
                while let event = try publishers.receive(dontWait: true) {
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
