import ArgumentParser
import ZeroMQ
import FerryProtocol

/// A Ferry process: what binds a socket or serves metrics.
public enum ServiceName: String, Sendable, CaseIterable {
    case origin, intake, matcher, broker, reporter, relay, agent, eventbus
}

/// One socket a Ferry process binds, and how everyone else reaches it: the one place its
/// port, its variables and who may connect are written. Services take their defaults and
/// help from here; docs/configuration.md's port table and compose/compose.yaml are checked
/// against it (`DocsMatchTheCode`).
public struct BoundSocket: Sendable {
    /// How the socket pairs with its peers, as docs/configuration.md spells it.
    public enum Pattern: String, Sendable {
        case pull = "PULL ← PUSH"
        case sub = "SUB ← XPUB"
        case router = "ROUTER ← DEALER"
        case xpub = "XPUB ← SUB"
        case xsub = "XSUB ← XPUB"
        case http = "HTTP"
    }

    /// Who gets in when transport keys are on.
    public enum Admission: Sendable, Equatable {
        /// CURVE, admitting a ZAP domain's keys.
        case curve(AdmissionDomain)
        /// Plain whatever the keys: keep it on loopback.
        case plain
        /// Plain unless `FERRY_EVENTS_OUT_CURVE` is on, then CURVE admitting `listed`.
        case plainUnlessCurveEvents
        /// Plain HTTP; what it answers is signed or needs a token.
        case http
    }

    /// The socket's name in docs/configuration.md's port table.
    public let name: String
    public let owner: ServiceName
    public let pattern: Pattern
    public let admission: Admission
    /// The variable the owner binds it from.
    public let bindVariable: String
    /// The variable the others connect to it from; nil when only probes and tools do.
    public let connectVariable: String?
    public let port: Int
    /// The largest message the owner takes on it; bigger ones are cut off by libzmq before
    /// the service sees them. Nil: the socket takes no messages from outside (a publisher side)
    /// or sets its own.
    public let maxMessageBytes: Int?

    /// Where it is bound and reached when nothing is configured.
    public var defaultEndpoint: String {
        pattern == .http ? "http://127.0.0.1:\(port)" : "tcp://127.0.0.1:\(port)"
    }

    /// The endpoint to bind: the bind variable, else the default.
    public var bindEndpoint: String { Env.string(bindVariable, defaultEndpoint) }

    /// The endpoint to connect to: the connect variable, else the default.
    public var connectEndpoint: String { Env.string(connectVariable ?? bindVariable, defaultEndpoint) }

    /// Help for the owner's bind option, naming the variable.
    public func bindHelp(_ what: String) -> ArgumentHelp { ArgumentHelp("\(what) Env: \(bindVariable).") }

    /// Help for a peer's option naming this socket, naming the variable.
    public func connectHelp(_ what: String) -> ArgumentHelp { ArgumentHelp("\(what) Env: \(connectVariable ?? bindVariable).") }
}

/// Every socket Ferry binds. docs/architecture.md says who sends what over each.
public enum Topology {
    static let controlMessage = Envelope.maxBodyBytes + 1024

    public static let origin = BoundSocket(name: "origin", owner: .origin, pattern: .http, admission: .http,
                                           bindVariable: "FERRY_ORIGIN_PORT", connectVariable: "FERRY_ORIGIN_URL", port: 7080, maxMessageBytes: nil)
    public static let intake = BoundSocket(name: "intake", owner: .intake, pattern: .pull, admission: .curve(.listed),
                                           bindVariable: "FERRY_INTAKE_BIND", connectVariable: "FERRY_INTAKE_ENDPOINT", port: 7100,
                                           maxMessageBytes: controlMessage)
    public static let intakeStatus = BoundSocket(name: "intake status", owner: .intake, pattern: .router, admission: .plain,
                                                 bindVariable: "FERRY_INTAKE_STATUS_BIND", connectVariable: nil, port: 7101, maxMessageBytes: nil)
    public static let matcher = BoundSocket(name: "matcher", owner: .matcher, pattern: .pull, admission: .curve(.fleet),
                                            bindVariable: "FERRY_MATCHER_BIND", connectVariable: "FERRY_MATCHER_ENDPOINT", port: 7110,
                                            maxMessageBytes: controlMessage)
    public static let holdings = BoundSocket(name: "holdings", owner: .matcher, pattern: .sub, admission: .curve(.parties),
                                             bindVariable: "FERRY_HOLDINGS_BIND", connectVariable: "FERRY_HOLDINGS_ENDPOINT", port: 7111,
                                             maxMessageBytes: controlMessage)
    public static let matcherStatus = BoundSocket(name: "matcher status", owner: .matcher, pattern: .router, admission: .plain,
                                                  bindVariable: "FERRY_MATCHER_STATUS_BIND", connectVariable: nil, port: 7112, maxMessageBytes: nil)
    public static let broker = BoundSocket(name: "broker", owner: .broker, pattern: .pull, admission: .curve(.fleet),
                                           bindVariable: "FERRY_BROKER_BIND", connectVariable: "FERRY_BROKER_ENDPOINT", port: 7120,
                                           maxMessageBytes: controlMessage)
    public static let brokerControl = BoundSocket(name: "broker control", owner: .broker, pattern: .router, admission: .curve(.parties),
                                                  bindVariable: "FERRY_BROKER_CONTROL_BIND", connectVariable: "FERRY_BROKER_CONTROL_ENDPOINT",
                                                  port: 7121, maxMessageBytes: controlMessage)
    public static let reporter = BoundSocket(name: "reporter", owner: .reporter, pattern: .pull, admission: .curve(.parties),
                                             bindVariable: "FERRY_REPORTER_BIND", connectVariable: "FERRY_REPORTER_ENDPOINT", port: 7130,
                                             maxMessageBytes: controlMessage)
    public static let reporterStatus = BoundSocket(name: "reporter status", owner: .reporter, pattern: .router, admission: .plain,
                                                   bindVariable: "FERRY_REPORTER_STATUS_BIND", connectVariable: nil, port: 7131, maxMessageBytes: nil)
    /// Its frames are packets: a header and at most the largest packet, with room for the attach token.
    public static let relay = BoundSocket(name: "relay", owner: .relay, pattern: .router, admission: .curve(.parties),
                                          bindVariable: "FERRY_RELAY_BIND", connectVariable: nil, port: 7200,
                                          maxMessageBytes: Int(ContentSummary.maxPacketSize) + 4096)
    public static let eventsOut = BoundSocket(name: "events out", owner: .eventbus, pattern: .xpub, admission: .plainUnlessCurveEvents,
                                              bindVariable: "FERRY_EVENTS_OUT_BIND", connectVariable: "FERRY_EVENTS_OUT", port: 7300, maxMessageBytes: nil)
    public static let eventsIn = BoundSocket(name: "events in", owner: .eventbus, pattern: .xsub, admission: .curve(.parties),
                                             bindVariable: "FERRY_EVENTS_IN_BIND", connectVariable: "FERRY_EVENTS_IN", port: 7301,
                                             maxMessageBytes: FerryEvent.maxBytes)
    public static let eventBusStatus = BoundSocket(name: "event bus status", owner: .eventbus, pattern: .router, admission: .plain,
                                                   bindVariable: "FERRY_EVENTBUS_STATUS_BIND", connectVariable: nil, port: 7302, maxMessageBytes: nil)
    public static let agentControl = BoundSocket(name: "agent control", owner: .agent, pattern: .router, admission: .plain,
                                                 bindVariable: "FERRY_AGENT_CONTROL", connectVariable: nil, port: 7400,
                                                 maxMessageBytes: controlMessage)

    public static let all = [origin, intake, intakeStatus, matcher, holdings, matcherStatus, broker, brokerControl, reporter, reporterStatus,
                             relay, eventsOut, eventsIn, eventBusStatus, agentControl]

    /// Where each service serves Prometheus `/metrics` on 127.0.0.1 unless `FERRY_METRICS_BIND`
    /// says otherwise; the origin serves it on its HTTP port.
    public static func metricsPort(_ service: ServiceName) -> Int {
        switch service {
        case .origin: origin.port
        case .intake: 9100
        case .matcher: 9110
        case .broker: 9120
        case .reporter: 9130
        case .relay: 9200
        case .eventbus: 9300
        case .agent: 9400
        }
    }
}

extension BoundSocket {
    /// Sets the socket's message limit, on the owner's socket or a peer's speaking the same
    /// dialog back.
    public func limit(_ socket: Socket) throws {
        if let maxMessageBytes { try socket.setMaxMessageSize(Int64(maxMessageBytes)) }
    }
}

extension BoundSocket: Equatable {
    public static func == (lhs: BoundSocket, rhs: BoundSocket) -> Bool { lhs.port == rhs.port && lhs.name == rhs.name }
}
