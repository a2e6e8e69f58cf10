import FerryProtocol
import FerryService
import Logging
import Synchronization
import ZeroMQ

/// The origin's ZeroMQ side: PUSHes requests to intake and publishes events. HTTP handlers run
/// on many threads and libzmq sockets are not thread-safe; each socket sits behind a mutex,
/// which gives libzmq the full memory barrier it requires when a socket changes threads.
public final class RequestForwarder: Sendable {
    private let intake: Mutex<Socket>
    private let events: Mutex<EventPublisher>

    public init(intakeEndpoint: String, eventsIn: String, security: TransportSecurity, logger: Logger) throws {
        let context = try Context()
        let socket = try context.socket(.push)
        try socket.setSendHighWaterMark(10_000)
        // Don't queue toward an intake that isn't connected: the device is told at once.
        try socket.setImmediate(true)
        try socket.setSendTimeout(milliseconds: 2000)
        try security.connect(socket, intakeEndpoint, to: .intake)
        intake = Mutex(socket)
        events = Mutex(try EventPublisher(context: context, endpoint: eventsIn, publisher: "origin", logger: logger, security: security))
    }

    /// False when intake could not take it within the send timeout.
    public func forward<M: WireMessage>(_ message: M) throws -> Bool {
        let frames = try message.frames()
        return try intake.withLock { socket in
            do {
                return try socket.send(frames)
            } catch let error as ZMQError where error.wouldBlock {
                return false
            }
        }
    }

    public func publish<Payload: EventPayload>(_ payload: Payload, requestId: RequestID? = nil) {
        publish(Publication(payload, requestId: requestId))
    }

    public func publish(_ publication: Publication) {
        events.withLock { $0.publish(publication) }
    }
}
