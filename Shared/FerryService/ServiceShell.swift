import FerryProtocol
import Foundation
import Logging
import ZeroMQ

/// An event a core decided to publish: the shell publishes it.
public struct Publication: Equatable, Sendable {
    public var topic: EventTopic
    public var requestId: RequestID?
    public var sessionId: SessionID?
    public var fields: [String: JSONValue]
    public init(_ topic: EventTopic, requestId: RequestID? = nil, sessionId: SessionID? = nil, _ fields: [String: JSONValue]) {
        self.topic = topic
        self.requestId = requestId
        self.sessionId = sessionId
        self.fields = fields
    }
}

/// The I/O every Ferry service does the same way, so its own code is only decisions: the
/// ZeroMQ context, the key gate (started before any socket binds), sockets bound as the
/// topology says or connected to a fleet service, the event publisher, the status socket, and
/// one poll loop over a poll set built once (zguide's `mdbroker.c` shape): each pass flushes
/// events, answers status queries, hands each readable socket to the service and ticks.
public final class ServiceShell {
    public let service: ServiceName
    public let context: Context
    public let security: TransportSecurity
    /// Nil for the event bus, which is where events go.
    private let events: EventPublisher?
    public let startedAt = Timestamp.now()
    private let gate: KeyGate?
    private let status: StatusResponder?

    /// `eventsIn`: the event bus's publisher endpoint; nil for the bus itself. `statusBind`:
    /// where the plain status socket is bound; nil for services that answer
    /// `status.query` on a socket of their own dialog. `context`: one shared with another loop
    /// of the same process, so the two can talk over `inproc://`.
    public init(_ service: ServiceName, security: TransportSecurity, eventsIn: String?,
                statusBind: String? = nil, context: Context? = nil, logger: Logger) throws {
        self.service = service
        self.security = security
        let context = try context ?? Context()
        let gate = try security.gate(context: context, service: service.rawValue, logger: logger)
        self.context = context
        self.gate = gate
        events = try eventsIn.map {
            try EventPublisher(context: context, endpoint: $0, publisher: service.rawValue, logger: logger, security: security, gate: gate)
        }
        status = try statusBind.map { try StatusResponder(context: context, bind: $0) }
    }

    public func publish(_ publication: Publication) {
        events?.publish(publication.topic, requestId: publication.requestId, sessionId: publication.sessionId, publication.fields)
    }

    public func publish(_ topic: EventTopic, requestId: RequestID? = nil, sessionId: SessionID? = nil, _ fields: [String: JSONValue]) {
        events?.publish(topic, requestId: requestId, sessionId: sessionId, fields)
    }

    /// The clients the key gate turned away since the last call, for a service without an
    /// event publisher (the bus) to publish itself; a publisher takes them at each pass.
    public func takeRefusals() -> [TransportRefusal] { gate?.takeRefusals() ?? [] }

    /// With transport keys: stop admitting a revoked party's key (its next connection asks the
    /// origin again, and is refused).
    public func forget(party: String) { gate?.forget(party: party) }

    /// A socket of `type` bound at `endpoint` as its topology row says. `configure` sets
    /// options that must precede the bind (subscriptions, watermarks).
    public func bind(_ type: SocketType, _ row: BoundSocket, at endpoint: String,
                     configure: (Socket) throws -> Void = { _ in }) throws -> Socket {
        let socket = try context.socket(type)
        try configure(socket)
        try security.bind(socket, endpoint, as: row)
        return socket
    }

    /// A socket of `type` connected to the fleet service `role` at `endpoint`. `queue`: how many
    /// messages may wait to be sent before a send would block (or fail, when not waiting).
    public func connect(_ type: SocketType, to endpoint: String, _ role: FleetRole, queue: Int32? = nil) throws -> Socket {
        let socket = try context.socket(type)
        if let queue { try socket.setSendHighWaterMark(queue) }
        try security.connect(socket, endpoint, to: role)
        return socket
    }

    /// Runs the loop until `stop`: `readable` gets each of `sockets` that has messages waiting
    /// (it reads what it wants), `tick` runs after every pass, at least every
    /// `tickMilliseconds`, and `counters` answers the status socket. On the way out, events
    /// still queued get a second to leave and the key gate closes.
    public func run(until stop: StopSignal, polling sockets: [Socket], tickMilliseconds: Int = 200,
                    counters: () -> [String: JSONValue] = { [:] }, readable: (Socket) throws -> Void, tick: () throws -> Void = {}) throws {
        defer {
            events?.close()
            gate?.close()
        }
        var poller = Poller()
        for socket in sockets { poller.add(socket) }
        if let status { poller.add(status.socket) }
        while !stop.isRequested {
            try poller.poll(timeoutMilliseconds: tickMilliseconds)
            events?.flush()
            status?.answer { StatusReport(service: service.rawValue, id: service.rawValue, startedAt: startedAt, counters: counters()) }
            for (index, socket) in sockets.enumerated() where poller.isReadable(index) { try readable(socket) }
            try tick()
        }
    }
}
