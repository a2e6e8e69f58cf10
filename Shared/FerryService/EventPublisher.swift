import FerryProtocol
import Foundation
import Logging
import ZeroMQ

/// Publishes `FerryEvent`s to the event bus. Owned by one loop thread like any socket; the
/// sequence number is per publisher, so readers can order events and spot gaps.
///
/// A plain PUB drops whatever it publishes before the bus's subscription has reached it, which
/// loses a service's first events (a relay joining, a device's hello) whenever the connection
/// is slow to come up. So the socket is an XPUB: it receives that subscription, and until it
/// has, events wait in a bounded backlog and go out in order once it arrives.
public final class EventPublisher {
    public let publisher: String
    private let socket: Socket
    private var sequence: UInt64 = 0
    private var subscribed = false
    private var backlog: [[Data]] = []
    private let backlogLimit = 10_000
    private var droppedFromBacklog = 0
    private let logger: Logger
    /// The service's ZAP handler, whose refusals go out as `transport.refused` at each flush.
    private let gate: KeyGate?

    /// Waits up to `readyTimeout` for the bus; a bus that comes up later still gets the backlog.
    public init(context: Context, endpoint: String, publisher: String, logger: Logger, security: TransportSecurity = .off,
                gate: KeyGate? = nil, watch: RefusalWatch? = nil, readyTimeout: Duration = .seconds(3)) throws {
        self.publisher = publisher
        self.logger = logger
        self.gate = gate
        socket = try context.socket(.xpub)
        // Events must not stall a service: past this many queued, they are dropped (and logged).
        try socket.setSendHighWaterMark(100_000)
        try security.connect(socket, endpoint, to: .eventbus, watch: watch)
        let deadline = ContinuousClock.now + readyTimeout
        while !subscribed && ContinuousClock.now < deadline {
            var poller = Poller()
            poller.add(socket)
            try poller.poll(timeoutMilliseconds: 50)
            readSubscriptions()
        }
        if !subscribed {
            logger.warning("event bus not reachable yet; events are kept until it is", metadata: ["endpoint": "\(endpoint)"])
        }
    }

    public func publish<Payload: EventPayload>(_ payload: Payload, requestId: RequestID? = nil, sessionId: SessionID? = nil) {
        publish(Publication(payload, requestId: requestId, sessionId: sessionId))
    }

    public func publish(_ publication: Publication) {
        sequence += 1
        let event = FerryEvent(topic: publication.topic.rawValue, time: Timestamp.now(), publisher: publisher, seq: sequence,
                               requestId: publication.requestId?.rawValue, sessionId: publication.sessionId?.hex, data: publication.fields)
        guard let frames = try? event.frames else { return }
        if !subscribed { readSubscriptions() }
        guard subscribed else {
            if backlog.count >= backlogLimit {
                backlog.removeFirst()
                droppedFromBacklog += 1
            }
            backlog.append(frames)
            return
        }
        flushBacklog()
        send(frames, topic: event.topic)
    }

    /// Sends what waited for the bus, if it has subscribed since; call it from a loop's tick.
    public func flush() {
        for refusal in gate?.takeRefusals() ?? [] {
            publish(refusal.event)
        }
        if !subscribed { readSubscriptions() }
        if subscribed { flushBacklog() }
    }

    /// Sends what is pending and closes, giving queued events a second to leave.
    public func close() {
        flush()
        socket.close(lingerMilliseconds: 1000)
    }

    private func readSubscriptions() {
        if socket.takeSubscriptions() { subscribed = true }
    }

    private func flushBacklog() {
        guard !backlog.isEmpty else { return }
        if droppedFromBacklog > 0 {
            logger.warning("\(droppedFromBacklog) events dropped while the event bus was unreachable")
            droppedFromBacklog = 0
        }
        for frames in backlog { send(frames, topic: "backlog") }
        backlog.removeAll()
    }

    private func send(_ frames: [Data], topic: String) {
        do {
            if try !socket.send(frames, dontWait: true) {
                logger.warning("event dropped: publisher queue full", metadata: ["topic": "\(topic)"])
            }
        } catch {
            logger.warning("event not published: \(error)", metadata: ["topic": "\(topic)"])
        }
    }

}

extension TransportRefusal {
    /// Its `transport.refused` event.
    public var event: EventData.TransportRefused {
        EventData.TransportRefused(domain: domain, address: address, key: key, reason: reason)
    }
}
