import FerryProtocol
import Foundation
import Logging
import ZeroMQ

/// Publishes `FerryEvent`s to the event bus. Owned by one loop thread like any socket; the
/// sequence number is per publisher, so readers can order events and spot gaps.
public final class EventPublisher {
    public let publisher: String
    private let socket: Socket
    private var sequence: UInt64 = 0
    private let logger: Logger

    public init(context: Context, endpoint: String, publisher: String, logger: Logger) throws {
        self.publisher = publisher
        self.logger = logger
        socket = try context.socket(.pub)
        // Events must not stall a service: past this many queued, PUB drops (and we log it).
        try socket.setSendHighWaterMark(100_000)
        try socket.connect(endpoint)
    }

    public func publish(_ topic: EventTopic, requestId: RequestID? = nil, sessionId: SessionID? = nil,
                        _ data: [String: JSONValue] = [:]) {
        sequence += 1
        let event = FerryEvent(topic: topic.rawValue, time: Timestamp.now(), publisher: publisher, seq: sequence,
                               requestId: requestId?.rawValue, sessionId: sessionId?.hex, data: data)
        do {
            if try !socket.send(try event.frames, dontWait: true) {
                logger.warning("event dropped: publisher queue full", metadata: ["topic": "\(topic.rawValue)"])
            }
        } catch {
            logger.warning("event not published: \(error)", metadata: ["topic": "\(topic.rawValue)"])
        }
    }

    public func close() { socket.close() }
}
