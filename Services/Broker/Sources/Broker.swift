import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import Logging
import Metrics
import ZeroMQ

public struct BrokerConfig: Sendable {
    public var bind: String
    public var controlBind: String
    public var reporter: String
    /// The matcher's PULL endpoint, told of senders that delivered nothing.
    public var matcher: String
    public var eventsIn: String
    public var addressPool: String
    public var window: Int
    public var heartbeatMilliseconds: Int
    /// Each session's rate limit at its relay; 0 is none.
    public var sessionBytesPerSecond: UInt64
    public var security: TransportSecurity
    public init(bind: String, controlBind: String, reporter: String, matcher: String, eventsIn: String, addressPool: String, window: Int,
                heartbeatMilliseconds: Int, sessionBytesPerSecond: UInt64 = 0, security: TransportSecurity = .off) {
        self.matcher = matcher
        self.security = security
        self.sessionBytesPerSecond = sessionBytesPerSecond
        self.bind = bind
        self.controlBind = controlBind
        self.reporter = reporter
        self.eventsIn = eventsIn
        self.addressPool = addressPool
        self.window = window
        self.heartbeatMilliseconds = heartbeatMilliseconds
    }
}

/// Step (c): turns match decisions into sessions and sends every party its connection
/// information over the control dialog (agents' and relays' DEALERs to this ROUTER).
/// `SessionBroker` decides; this loop reads the sockets and carries out what it says.
public enum Broker {
    public static func service(_ config: BrokerConfig, logger: Logger) throws -> LoopService {
        // Refuse bad settings at start, not at the first session.
        _ = try AddressPool(cidr: config.addressPool)
        guard (1...4096).contains(config.window) else {
            throw ConfigurationError("FERRY_WINDOW_PACKETS / --window must be 1...4096 packets (got \(config.window))")
        }
        guard config.heartbeatMilliseconds >= 50 else { throw ConfigurationError("FERRY_HEARTBEAT_MS / --heartbeat-ms must be at least 50") }
        return LoopService(name: "broker") { stop in try run(config, logger: logger, stop: stop) }
    }

    static func run(_ config: BrokerConfig, logger: Logger, stop: StopSignal) throws {
        let shell = try ServiceShell(.broker, security: config.security, eventsIn: config.eventsIn, logger: logger)
        let decisions = try shell.bind(.pull, Topology.broker, at: config.bind)
        let control = try shell.bind(.router, Topology.brokerControl, at: config.controlBind) { socket in
            try socket.setRouterMandatory(true)
            // A restarted agent or relay reconnects with the same routing id; let it take over. With
            // keys parties set none and are routed by their key instead (see `routes`): there a
            // handover would only give a client naming an id the ROUTER generated that party's route.
            try socket.setRouterHandover(!config.security.isOn)
        }
        let reporter = try shell.connect(.push, to: config.reporter, .reporter, queue: 100_000)
        let matcher = try shell.connect(.push, to: config.matcher, .matcher, queue: 10_000)
        let broker = try SessionBroker(config: config, logger: logger)
        /// With keys: each party's current connection, as the ROUTER numbered it. Parties then set
        /// no routing id of their own, so none can take over another's by naming it; the party a
        /// message is from is the one its key belongs to.
        var routes: [String: Data] = [:]

        func carryOut(_ effects: [SessionBroker.Effect]) {
            for effect in effects {
                switch effect {
                case .publish(let publication):
                    shell.publish(publication)
                case .forget(let party):
                    shell.forget(party: party)
                case .send(let frames, let destination, let ifUnsent):
                    let socket: Socket, envelope: [Data]
                    switch destination {
                    case .party(let id): (socket, envelope) = (control, [routes[id] ?? Data(id.utf8)] + frames)
                    case .connection(let routingId): (socket, envelope) = (control, [routingId] + frames)
                    case .reporter: (socket, envelope) = (reporter, frames)
                    case .matcher: (socket, envelope) = (matcher, frames)
                    }
                    // An unroutable party (gone, or never connected) is an error on a mandatory ROUTER.
                    if (try? socket.send(envelope, dontWait: true)) != true { carryOut(broker.unsent(ifUnsent)) }
                }
            }
        }

        logger.info("broker up", metadata: ["decisions": "\(config.bind)", "control": "\(config.controlBind)", "pool": "\(config.addressPool)"])
        try shell.run(until: stop, polling: [control, decisions], tickMilliseconds: 100) { socket in
            if socket === control {
                while let frames = try control.receive(dontWait: true) {
                    let peer = config.security.isOn && frames.count > 1 ? PeerKey(frames[1]) : nil
                    if let party = peer?.party, let routingId = frames.first?.data { routes[party] = routingId }
                    carryOut(broker.control(frames.map(\.data), peer: peer))
                }
            } else {
                while let frames = try decisions.receive(dontWait: true) { carryOut(broker.decision(frames.map(\.data))) }
            }
        } tick: {
            carryOut(broker.tick())
        }
        reporter.close(lingerMilliseconds: 5000)
        matcher.close(lingerMilliseconds: 1000)
        control.close(lingerMilliseconds: 1000)
        logger.info("broker stopped", metadata: ["sessions": "\(broker.sessions.count)"])
    }
}

extension PeerKey {
    /// What the key gate said of the sender of the message whose first frame after the routing
    /// id this is.
    init(_ frame: Message) {
        self.init(who: frame.peer, key: frame.property("Ferry-Key"))
    }
}
