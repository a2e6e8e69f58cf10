import FerryProtocol
import Foundation
import Logging
import ZeroMQ

/// An event a core decided to publish: the shell publishes it. Its data is a typed payload
/// (`EventData`), held as the fields the event carries.
public struct Publication: Equatable, Sendable {
    public let topic: EventTopic
    public let requestId: RequestID?
    public let sessionId: SessionID?
    public let fields: [String: JSONValue]

    public init<Payload: EventPayload>(_ payload: Payload, requestId: RequestID? = nil, sessionId: SessionID? = nil) {
        topic = Payload.topic
        self.requestId = requestId
        self.sessionId = sessionId
        fields = payload.fields
    }

    /// An audited change: what its entry recorded (an `AuditDetail`), who made it (`actor`) and
    /// its place in the trail (`auditSeq`); `ferryTold` where Ferry was told of it.
    public init(audited entry: AuditEntry, ferryTold: Bool? = nil) {
        topic = entry.action.topic
        requestId = nil
        sessionId = nil
        var fields = entry.detail
        fields["actor"] = .string(entry.actor)
        fields["auditSeq"] = JSONValue(Int(entry.seq))
        if let ferryTold { fields["ferryTold"] = .bool(ferryTold) }
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
    /// For a device or relay: reconnects the sockets a service refused before this party's
    /// enrolment reached it (each pass retries them).
    public let refusals: RefusalWatch?
    /// Threads for blocking work beside the loop (HTTP to the origin, enrolment); stopped when
    /// the loop ends.
    public let sideWork: SideWork

    /// `eventsIn`: the event bus's publisher endpoint; nil for the bus itself. `statusBind`:
    /// where the plain status socket is bound; nil for services that answer
    /// `status.query` on a socket of their own dialog. `context`: one shared with another loop
    /// of the same process, so the two can talk over `inproc://`. `publisher`: the name its
    /// events go out under (default: the service's). `enrolled`: a device or relay, whose
    /// connections a service may refuse until its enrolment reaches it, and which retries them.
    /// `servesKeys`: false for a process that binds no CURVE socket (an agent), which needs no
    /// key gate.
    public init(_ service: ServiceName, publisher: String? = nil, security: TransportSecurity, eventsIn: String?,
                statusBind: String? = nil, context: Context? = nil, enrolled: Bool = false, servesKeys: Bool = true, logger: Logger) throws {
        self.service = service
        self.security = security
        sideWork = SideWork(name: service.rawValue)
        let context = try context ?? Context()
        let gate = servesKeys ? try security.gate(context: context, service: service.rawValue, logger: logger) : nil
        self.context = context
        self.gate = gate
        let refusals = enrolled ? RefusalWatch(context: context) : nil
        self.refusals = refusals
        events = try eventsIn.map {
            try EventPublisher(context: context, endpoint: $0, publisher: publisher ?? service.rawValue, logger: logger, security: security,
                               gate: gate, watch: refusals)
        }
        status = try statusBind.map { try StatusResponder(context: context, bind: $0) }
    }

    public func publish(_ publication: Publication) {
        events?.publish(publication)
    }

    public func publish<Payload: EventPayload>(_ payload: Payload, requestId: RequestID? = nil, sessionId: SessionID? = nil) {
        events?.publish(Publication(payload, requestId: requestId, sessionId: sessionId))
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
    public func connect(_ type: SocketType, to endpoint: String, _ role: FleetRole, queue: Int32? = nil,
                        configure: (Socket) throws -> Void = { _ in }) throws -> Socket {
        let socket = try context.socket(type)
        if let queue { try socket.setSendHighWaterMark(queue) }
        try configure(socket)
        try security.connect(socket, endpoint, to: role, watch: refusals)
        return socket
    }

    /// Runs the loop until `stop`: `readable` gets each of `sockets` that has messages waiting
    /// (it reads what it wants), `tick` runs after every pass, at least every
    /// `tickMilliseconds`, and `counters` answers the status socket. On the way out, events
    /// still queued get a second to leave and the key gate closes.
    public func run(until stop: StopSignal, polling sockets: [Socket], tickMilliseconds: Int = 200,
                    counters: () -> [String: JSONValue] = { [:] }, readable: (Socket) throws -> Void, tick: () throws -> Void = {}) throws {
        try run(while: { !stop.isRequested }, polling: sockets, timeoutMilliseconds: { tickMilliseconds }, counters: counters,
                readable: readable, tick: tick)
    }

    /// The loop in full: it goes on while `running` says so (a relay drains after the stop
    /// signal); `links` are sockets that come and go (a link per session), polled too for the
    /// events each names (a blocked sender waits to write), and the poll set is rebuilt only when
    /// they change; `readable` is called for those that can be read; `timeoutMilliseconds` may shorten the wait
    /// (work queued); `finally` runs before queued events get their second to leave.
    public func run(while running: () -> Bool, polling sockets: [Socket], links: () -> [(Socket, PollEvents)] = { [] },
                    timeoutMilliseconds: () -> Int, counters: () -> [String: JSONValue] = { [:] },
                    readable: (Socket) throws -> Void, tick: () throws -> Void = {}, finally: () throws -> Void = {}) throws {
        defer {
            sideWork.stop()
            events?.close()
            gate?.close()
        }
        let fixed = sockets.map { ($0, PollEvents.readable) }
        var polled = fixed
        /// The poll set: what the loop polls, then the status socket, if any, at `polled.count`.
        func pollSet() -> Poller {
            var poller = Poller()
            for (socket, events) in polled { poller.add(socket, events) }
            if let status { poller.add(status.socket) }
            return poller
        }
        var poller = pollSet()
        while running() {
            let extra = links()
            if polled.count != fixed.count + extra.count
                || zip(extra, polled.dropFirst(fixed.count)).contains(where: { $0.0 !== $1.0 || $0.1 != $1.1 }) {
                polled = fixed + extra
                poller = pollSet()
            }
            try poller.poll(timeoutMilliseconds: timeoutMilliseconds())
            events?.flush()
            refusals?.retryRefused()
            if let status, poller.isReadable(polled.count) {
                status.answer { StatusReport(service: service.rawValue, id: service.rawValue, startedAt: startedAt, counters: counters()) }
            }
            for (index, (socket, _)) in polled.enumerated() where poller.isReadable(index) { try readable(socket) }
            try tick()
        }
        try finally()
    }
}
