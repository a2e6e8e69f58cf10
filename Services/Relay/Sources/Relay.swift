import FerryLink
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import Logging
import Metrics
import ZeroMQ

public struct RelayConfig: Sendable {
    public var bind: String
    public var advertise: String
    public var broker: String
    public var eventsIn: String
    public var relayId: RelayID
    public var zone: String?
    /// Set: this relay is that device's forwarding endpoint, on its host.
    public var forwardsFor: DeviceID?
    /// With `forwardsFor`: where that device's sending links attach without CURVE.
    public var localBind: String?
    public var heartbeatMilliseconds: Int
    /// On SIGTERM the relay forwards its open sessions for at most this long before it exits.
    public var drainMilliseconds: Int
    /// With transport security on, presenting the relay's own enrolled key (`relay.keys`).
    public var security: TransportSecurity
    /// Where it enrols its keys, and with what; nil origin: it doesn't enrol (security off).
    public var origin: URL?
    public var joinToken: @Sendable () -> String?
    public var keys: DeviceKeys?
    public init(bind: String, advertise: String, broker: String, eventsIn: String, relayId: RelayID, zone: String?, heartbeatMilliseconds: Int,
                drainMilliseconds: Int, security: TransportSecurity = .off, origin: URL? = nil, keys: DeviceKeys? = nil,
                joinToken: @escaping @Sendable () -> String? = { nil }, forwardsFor: DeviceID? = nil, localBind: String? = nil) {
        self.forwardsFor = forwardsFor
        self.localBind = localBind
        self.security = security
        self.origin = origin
        self.keys = keys
        self.joinToken = joinToken
        self.drainMilliseconds = drainMilliseconds
        self.bind = bind
        self.advertise = advertise
        self.broker = broker
        self.eventsIn = eventsIn
        self.relayId = relayId
        self.zone = zone
        self.heartbeatMilliseconds = heartbeatMilliseconds
    }
}

/// The third device of the claim: receives each packet of a session on its virtual link and
/// passes it on toward the next hop, only for sessions the broker opened on it.
public enum Relay {
    /// `context`: one shared with the loop of the device this relay forwards for, when it runs
    /// inside that device's agent, so its sending links reach the local endpoint in-process.
    public static func service(_ config: RelayConfig, context: Context? = nil, logger: Logger) -> LoopService {
        LoopService(name: "relay") { stop in
            let relay = try RelayLoop(config: config, context: context, logger: logger)
            try relay.run(stop: stop)
        }
    }

    /// The relay's transport security: with keys, presenting its own pair from `relay.keys` in
    /// `dataDirectory`, made on first start; nil keys when security is off.
    public static func transport(_ security: TransportSecurity, dataDirectory: String) throws -> (TransportSecurity, DeviceKeys?) {
        guard security.isOn else { return (security, nil) }
        let keys = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: dataDirectory), fileName: DeviceKeys.relayFileName)
        return (security.presenting(keys.transportKeyPair), keys)
    }

    /// The relay's id: given, or made on first start and kept in `dataDirectory`, so a scaled
    /// replica needs no configuration of its own and keeps its id across restarts.
    public static func identity(given: String?, dataDirectory: String) throws -> RelayID {
        if let given { return try RelayID(given) }
        let directory = URL(fileURLWithPath: dataDirectory)
        let file = directory.appendingPathComponent("relay.id")
        if let saved = try? String(contentsOf: file, encoding: .utf8), let id = try? RelayID(saved.trimmingCharacters(in: .whitespacesAndNewlines)) {
            return id
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let id = RelayID.random(prefix: "relay")
        try id.rawValue.write(to: file, atomically: true, encoding: .utf8)
        return id
    }
}

/// Why the relay dropped a frame, spelled once: its `drops` counter, `ferry_relay_drops_total`
/// and `link.dropped` use these names, and docs/protocol.md lists each (a test checks).
enum RelayDrop: String, CaseIterable {
    case unknownSession = "unknown-session"
    case unauthorised = "unauthorised"
    case quotaExceeded = "quota-exceeded"
    case sessionMismatch = "session-mismatch"
    case wrongDirection = "wrong-direction"
    case queueFull = "queue-full"
    case overCredit = "over-credit"
    case malformed = "malformed"
    case unsupportedVersion = "unsupported-version"
    case unknownKind = "unknown-kind"
    case invalid = "invalid"
    case tooLarge = "too-large"
    case malformedControl = "malformed-control"

    /// A frame that doesn't parse, by the decoder's reason.
    init(_ error: any Error) {
        self = (error as? WireError).flatMap { RelayDrop(rawValue: $0.reason) } ?? .malformed
    }
}

final class RelayLoop {
    let config: RelayConfig
    let logger: Logger
    /// Its context, key gate, event publisher, and the reconnection of what the broker refused
    /// before this relay's enrolment reached it.
    let shell: ServiceShell
    let router: Socket
    /// With `localBind`: the endpoint only the device this relay forwards for reaches, no CURVE.
    let local: Socket?
    let broker: Socket
    /// The broker's interval once it has welcomed us, so both sides judge liveness alike.
    var heartbeat: Duration
    let startedAt = Timestamp.now()

    var links: [SessionID: RelayLink] = [:]
    /// A neighbour (the ROUTER it came through, its routing id there) -> its session and which
    /// side it is on. A connection becomes a neighbour only by attaching with the broker's
    /// token for that side.
    var neighbours: [Neighbour: (session: SessionID, side: RelayLink.Direction)] = [:]
    var totals = LinkCounters()
    var drops: [RelayDrop: UInt64] = [:]
    var lastDropEvent = ContinuousClock.now - .seconds(10)
    var lastHeardFromBroker = ContinuousClock.now
    var welcomed = false
    /// The broker's session-token key, from its welcome; until then no party can attach.
    var tokenKey: VerifyingKey?
    var nextHeartbeat = ContinuousClock.now
    let packetsMetric = Counter(label: "ferry_relay_packets_total")
    let bytesMetric = Counter(label: "ferry_relay_payload_bytes_total")
    let linksMetric = Gauge(label: "ferry_relay_links")

    init(config: RelayConfig, context: Context? = nil, logger: Logger) throws {
        self.config = config
        self.logger = logger
        heartbeat = .milliseconds(config.heartbeatMilliseconds)
        shell = try ServiceShell(.relay, publisher: "relay:\(config.relayId)", security: config.security, eventsIn: config.eventsIn,
                                 context: context, enrolled: true, logger: logger)
        router = try shell.bind(.router, Topology.relay, at: config.bind, configure: Self.linkRouter)
        if let endpoint = config.localBind, config.forwardsFor != nil {
            let local = try shell.context.socket(.router)
            try Self.linkRouter(local)
            try Self.prepareLocal(endpoint)
            try local.bind(endpoint)
            self.local = local
        } else {
            local = nil
        }
        // With keys the broker knows us by our key and routes by the id its ROUTER gives this
        // connection; a chosen routing id is only for plain TCP.
        let relayId = config.relayId.rawValue, isOn = config.security.isOn
        broker = try shell.connect(.dealer, to: config.broker, .broker) { broker in
            if !isOn { try broker.setIdentity(relayId) }
        }
    }

    /// Either ROUTER devices' links attach to. No handover: a second connection naming an
    /// address already joined is refused rather than taking the session's traffic over from
    /// the party that attached with a token. Credit bounds what each session puts in a pipe;
    /// the limit is a backstop at two of the largest windows a session may have.
    static func linkRouter(_ router: Socket) throws {
        try router.setRouterMandatory(true)
        try router.setSendHighWaterMark(2 * 4096 + 64)
        try router.setReceiveHighWaterMark(2 * 4096 + 64)
    }

    /// An `ipc://` path's directory is made if missing, for this user only, so that nobody
    /// else can even reach the socket in it (an abstract `ipc://@NAME` has no directory).
    static func prepareLocal(_ endpoint: String) throws {
        guard endpoint.hasPrefix("ipc://"), !endpoint.hasPrefix("ipc://@") else { return }
        let directory = URL(fileURLWithPath: String(endpoint.dropFirst("ipc://".count))).deletingLastPathComponent()
        guard !FileManager.default.fileExists(atPath: directory.path) else { return }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    func run(stop: StopSignal) throws {
        logger.info("relay up", metadata: ["id": "\(config.relayId)", "bind": "\(config.bind)", "advertise": "\(config.advertise)"])
        // A relay's key must be enrolled before the broker or any device lets it in.
        let enrolling = StopSignal()
        defer { enrolling.request() }
        if let origin = config.origin, let keys = config.keys {
            PartyEnrolment.start(origin: origin, id: config.relayId.rawValue, kind: .relay, keys: keys, token: config.joinToken, logger: logger,
                                 stop: enrolling, on: shell.sideWork)
        }
        sendToBroker(hello)
        var drainDeadline: ContinuousClock.Instant?
        /// Told to stop, it takes no new sessions, finishes the open ones, and only then goes.
        func running() -> Bool {
            if stop.isRequested && drainDeadline == nil {
                drainDeadline = .now + .milliseconds(config.drainMilliseconds)
                sendToBroker(RelayDraining(relayId: config.relayId, sessions: links.count, deadlineMilliseconds: config.drainMilliseconds))
                logger.info("draining", metadata: ["sessions": "\(links.count)", "deadline.ms": "\(config.drainMilliseconds)"])
            }
            guard let deadline = drainDeadline else { return true }
            return !links.isEmpty && ContinuousClock.now < deadline
        }
        try shell.run(while: running, polling: [router, broker] + (local.map { [$0] } ?? []), links: { links.values.compactMap { $0.downstreamDealer.map { ($0, .readable) } } },
                      timeoutMilliseconds: { links.values.contains { $0.queued > 0 } ? 5 : 100 }) { socket in
            if socket === router {
                while let frames = try router.receive(dontWait: true) { handleRouter(frames, via: .network) }
            } else if let local, socket === local {
                while let frames = try local.receive(dontWait: true) { handleRouter(frames, via: .local) }
            } else if socket === broker {
                while let frames = try broker.receive(dontWait: true) { handleBroker(frames) }
            } else if let link = links.values.first(where: { $0.downstreamDealer === socket }) {
                while let frames = try socket.receive(dontWait: true) { handle(frames[...], on: link, from: .towardReceiver) }
            }
        } tick: {
            for link in links.values where link.queued > 0 { flush(link) }
            tick()
        } finally: {
            for link in links.values {
                // Past the drain deadline: the receiver gets what is missing from the origin.
                // Sent past the queues, which nobody will flush now.
                for side in [RelayLink.Direction.towardReceiver, .towardSender] {
                    _ = send(LinkFrame.messages(PacketHeader(kind: .abort, sessionId: link.link.sessionId), payload: Data("relay-stopping".utf8)),
                             on: link, toward: side)
                }
                closeLink(link, reason: "relay-stopping")
            }
            // Let the aborts and the final link reports reach their peers.
            router.close(lingerMilliseconds: 1000)
            local?.close(lingerMilliseconds: 1000)
            broker.close(lingerMilliseconds: 1000)
        }
        logger.info("relay stopped", metadata: ["packets": "\(totals.packetsForwarded)", "bytes": "\(totals.payloadBytesForwarded)"])
    }

    // MARK: packets

    func handleRouter(_ frames: [Message], via: Neighbour.Via) {
        guard frames.count >= 2 else { return drop(.malformed, detail: "frame without content") }
        // Raw bytes: with keys the ROUTER makes the routing ids, and they aren't text.
        let identity = frames[0].data
        if via == .network, frames.count == 4, frames[1].string == Envelope.version {
            return answerProbe(frames)
        }
        let neighbour = Neighbour(via: via, routingId: identity)
        if let known = neighbours[neighbour], let link = links[known.session] {
            return handle(frames[1...], on: link, from: known.side, neighbour: neighbour)
        }
        // Not a neighbour yet: only an attach, for an open session, with the token for its side.
        // What isn't even a packet names no session either.
        guard let packet = try? LinkFrame(frames: frames[1...]) else {
            return drop(.unknownSession, detail: "frames from \(Self.printable(identity)), which no open session names, that aren't a link packet")
        }
        guard let link = links[packet.header.sessionId] else {
            return drop(.unknownSession, detail: "packet from \(Self.printable(identity)) for session \(packet.header.sessionId), which is not open here")
        }
        guard packet.header.kind == .attach, let attach = try? packet.decodeAttach() else {
            return drop(.unauthorised, detail: "\(packet.header.kind) packet for session \(link.link.sessionId) from \(Self.printable(identity)) before a valid attach")
        }
        let side: RelayLink.Direction = attach.role == .sender ? .towardSender : .towardReceiver
        guard !(side == .towardReceiver && link.downstreamDealer != nil) else {
            return drop(.unauthorised, detail: "attach as the receiver of session \(link.link.sessionId), whose receiver side is a relay")
        }
        handle(frames[1...], on: link, from: side, neighbour: neighbour)
    }

    /// `from` is the side the frames arrived from; `neighbour` the device they came from (nil
    /// from a further relay). The session's `SessionForwarding` judges; this carries the
    /// verdict out.
    func handle(_ frames: ArraySlice<Message>, on link: RelayLink, from side: RelayLink.Direction, neighbour: Neighbour? = nil) {
        let packet: LinkFrame
        do {
            packet = try LinkFrame(frames: frames)
        } catch {
            return drop(RelayDrop(error), detail: "\(error)")
        }
        var onward = Array(frames)
        switch link.forwarding.judge(packet.header, from: side) {
        case .drop(let reason, let detail):
            return drop(reason, detail: detail)
        case .quotaExceeded:
            return quotaExceeded(link)
        case .absorb:
            return link.link.touch()
        case .forwardCredit(let limit):
            var header = packet.header
            header.sequence = limit
            onward = [Message(header.encoded)]
        case .checkAttach:
            // Who the key gate said sent it: read for an attach only, never per data packet.
            guard let neighbour, let stripped = authorise(packet, on: link, from: side, neighbour: neighbour, peer: frames.first?.peer) else { return }
            onward = stripped
        case .forward:
            break
        }
        link.link.touch()
        guard enqueue(onward, on: link, toward: side.opposite) else { return }
        link.forwarding.forwarded(packet.header)
        if packet.header.kind == .data {
            let contentBytes = UInt64(packet.header.length) - UInt64(ContentSummary.sealOverhead)
            totals.packetsForwarded += 1
            totals.payloadBytesForwarded += contentBytes
            packetsMetric.increment()
            bytesMetric.increment(by: Int64(contentBytes))
        }
    }

    /// The attach's token checked (`SessionForwarding.authorise`), the side bound to this
    /// connection. Returns the attach to pass on, without the token (the other party has no
    /// use for it), or nil when refused.
    func authorise(_ packet: LinkFrame, on link: RelayLink, from side: RelayLink.Direction, neighbour: Neighbour, peer: TransportPeer?) -> [Message]? {
        do {
            var attach = try packet.decodeAttach()
            let bound = link.attached[side]
            if let bound, bound.via != neighbour.via { throw TrustError.badToken("the \(side) side is attached already") }
            try link.forwarding.authorise(attach, from: side, identity: neighbour.routingId, bound: bound?.routingId, peer: peer,
                                          ownDevice: neighbour.via == .local ? config.forwardsFor : nil, tokenKey: tokenKey,
                                          secure: config.security.isOn, nowMilliseconds: SessionTokens.nowMilliseconds())
            link.attached[side] = neighbour
            neighbours[neighbour] = (link.link.sessionId, side)
            attach.token = nil
            return LinkFrame.attach(link.link.sessionId, attach)
        } catch {
            drop(.unauthorised, detail: "attach to session \(link.link.sessionId) from \(Self.printable(neighbour.routingId)): \(error)")
            return nil
        }
    }

    /// A sender went past what the broker allowed the session: both sides are told, and the
    /// session ends (the receiver takes the rest elsewhere).
    func quotaExceeded(_ link: RelayLink) {
        let quota = link.forwarding.quotaBytes ?? 0
        drop(.quotaExceeded, detail: "session \(link.link.sessionId) went past \(quota) payload bytes")
        shell.publish(EventData.LinkQuotaExceeded(relayId: config.relayId.rawValue, quotaBytes: quota,
                                                  payloadBytes: link.forwarding.counters.payloadBytesForwarded),
                      requestId: link.link.requestId, sessionId: link.link.sessionId)
        abort(link, RelayDrop.quotaExceeded.rawValue)
    }

    /// An abort with `reason` toward both sides.
    func abort(_ link: RelayLink, _ reason: String) {
        for side in [RelayLink.Direction.towardReceiver, .towardSender] {
            enqueue(LinkFrame.messages(PacketHeader(kind: .abort, sessionId: link.link.sessionId), payload: Data(reason.utf8)), on: link, toward: side)
        }
    }

    /// Sends or queues; false when the queue was full and the frames were dropped.
    @discardableResult
    func enqueue(_ frames: [Message], on link: RelayLink, toward side: RelayLink.Direction) -> Bool {
        switch side {
        case .towardReceiver:
            if link.towardReceiver.isEmpty, let cost = admit(frames, on: link), send(frames, on: link, toward: side) {
                link.paid(cost)
                return true
            }
            guard link.towardReceiver.count < link.queueLimit else {
                link.forwarding.dropped()
                drop(.queueFull, detail: "session \(link.link.sessionId) exceeded its window toward the receiver")
                return false
            }
            link.towardReceiver.append(frames)
        case .towardSender:
            if link.towardSender.isEmpty, send(frames, on: link, toward: side) { return true }
            guard link.towardSender.count < link.queueLimit else {
                link.forwarding.dropped()
                drop(.queueFull, detail: "session \(link.link.sessionId) exceeded its window toward the sender")
                return false
            }
            link.towardSender.append(frames)
        }
        link.forwarding.queuedPeak(link.queued)
        totals.peakQueued = max(totals.peakQueued, link.queued)
        return true
    }

    /// False when the next hop can't take it yet (not connected, or its pipe is full).
    func send(_ frames: [Message], on link: RelayLink, toward side: RelayLink.Direction) -> Bool {
        do {
            if side == .towardReceiver, let dealer = link.downstreamDealer {
                return try dealer.send(messages: frames, dontWait: true)
            }
            // Nobody attached on that side yet: the frames wait, as for a party not yet connected.
            guard let neighbour = link.attached[side] else { return false }
            let socket = neighbour.via == .local ? local ?? router : router
            return try socket.send(messages: [Message(neighbour.routingId)] + frames, dontWait: true)
        } catch let error as ZMQError where error.isHostUnreachable {
            return false
        } catch {
            logger.warning("forwarding failed: \(error)", metadata: ["session.id": "\(link.link.sessionId)"])
            return false
        }
    }

    /// The session's rate limit: the cost to pay once sent, or nil to hold the frames back (the
    /// first time, an event says so).
    func admit(_ frames: [Message], on link: RelayLink) -> Int? {
        let wasThrottled = link.throttled
        let (allowed, cost) = link.rateAllows(frames)
        if !allowed, !wasThrottled {
            shell.publish(EventData.LinkThrottled(relayId: config.relayId.rawValue, bytesPerSecond: link.rate.map { UInt64($0.rate) } ?? 0),
                          requestId: link.link.requestId, sessionId: link.link.sessionId)
        }
        return allowed ? cost : nil
    }

    func flush(_ link: RelayLink) {
        while let first = link.towardReceiver.first, let cost = admit(first, on: link), send(first, on: link, toward: .towardReceiver) {
            link.paid(cost)
            link.towardReceiver.removeFirst()
        }
        while let first = link.towardSender.first, send(first, on: link, toward: .towardSender) { link.towardSender.removeFirst() }
    }

    // MARK: broker dialog

    func handleBroker(_ frames: [Message]) {
        lastHeardFromBroker = .now
        let envelope: Envelope
        do {
            envelope = try Envelope(frames: frames.map(\.data))
        } catch {
            return drop(.malformedControl, detail: "\(error)")
        }
        do {
            switch envelope.kind {
            case LinkOpen.kind: try openLink(try envelope.decode(LinkOpen.self))
            case SessionCancel.kind:
                let cancel = try envelope.decode(SessionCancel.self)
                if let link = links[cancel.sessionId] {
                    abort(link, cancel.reason)
                    link.forwarding.close("cancelled: \(cancel.reason)")
                }
            case Welcome.kind:
                let welcome = try envelope.decode(Welcome.self)
                welcomed = true
                heartbeat = .milliseconds(max(50, welcome.heartbeatMilliseconds))
                // A restarted broker has a new key; links already attached keep going.
                if let key = welcome.tokenKey { tokenKey = try VerifyingKey(base64: key) }
            case Heartbeat.kind: break
            default: throw WireError.unknownKind(envelope.kind)
            }
        } catch {
            drop(.malformedControl, detail: "\(error)")
        }
    }

    func openLink(_ open: LinkOpen) throws {
        if links[open.sessionId] != nil {
            sendToBroker(LinkReady(sessionId: open.sessionId, address: open.address))
            return
        }
        let link = try RelayLink(open: open, relayId: config.relayId, context: shell.context, security: config.security)
        links[open.sessionId] = link
        shell.publish(EventData.LinkSpawned(relayId: config.relayId.rawValue, address: open.address, upstream: open.upstream.address,
                                            downstream: open.downstream.address, window: open.window, quotaBytes: open.quotaBytes,
                                            bytesPerSecond: open.bytesPerSecond), requestId: open.requestId, sessionId: open.sessionId)
        sendToBroker(LinkReady(sessionId: open.sessionId, address: open.address))
    }

    func closeLink(_ link: RelayLink, reason: String) {
        links[link.link.sessionId] = nil
        // Without keys routing ids are overlay addresses, which return to the broker's pool and
        // may already name another session here.
        for neighbour in link.attached.values where neighbours[neighbour]?.session == link.link.sessionId {
            neighbours[neighbour] = nil
        }
        link.close()
        let counters = link.forwarding.counters
        sendToBroker(LinkClosed(sessionId: link.link.sessionId, address: link.link.address, reason: reason, counters: counters))
        shell.publish(EventData.LinkClosed(role: "relay", relayId: config.relayId.rawValue, reason: reason, packets: counters.packetsForwarded,
                                           payloadBytes: counters.payloadBytesForwarded, peakQueued: counters.peakQueued, dropped: counters.dropped),
                      requestId: link.link.requestId, sessionId: link.link.sessionId)
    }

    func tick() {
        linksMetric.record(links.count)
        let now = ContinuousClock.now
        for link in links.values {
            if let reason = link.forwarding.ending(at: now, queued: link.queued, idle: link.link.isIdle(at: now)) { closeLink(link, reason: reason) }
        }
        if now >= nextHeartbeat {
            nextHeartbeat = now + heartbeat
            // The broker lost track of us (restarted, or we were expired): introduce ourselves again.
            if now - lastHeardFromBroker > heartbeat * 3 {
                sendToBroker(hello)
            }
            sendToBroker(Heartbeat(load: links.count))
        }
    }

    var hello: RelayHello { RelayHello(relayId: config.relayId, endpoint: config.advertise, zone: config.zone, forwardsFor: config.forwardsFor) }

    func sendToBroker<M: WireMessage>(_ message: M) {
        do {
            _ = try broker.send(try message.frames(), dontWait: true)
        } catch {
            logger.warning("cannot reach broker: \(error)")
        }
    }

    /// A routing id for a log line: an overlay address as itself, a ROUTER-made id in hex.
    static func printable(_ identity: Data) -> String {
        if let text = String(data: identity.prefix(40), encoding: .utf8), text.allSatisfy({ $0.isASCII && !$0.isNewline && $0 != "\0" }) { return text }
        return "0x" + Hex.encode(identity.prefix(20))
    }

    func drop(_ reason: RelayDrop, detail: String) {
        drops[reason, default: 0] += 1
        totals.dropped += 1
        Counter(label: "ferry_relay_drops_total", dimensions: [("reason", reason.rawValue)]).increment()
        logger.debug("dropped: \(detail)", metadata: ["reason": "\(reason.rawValue)"])
        // One event per second at most: a flood of bad frames must not become a flood of events.
        if ContinuousClock.now - lastDropEvent > .seconds(1) {
            lastDropEvent = .now
            shell.publish(EventData.LinkDropped(relayId: config.relayId.rawValue, reason: reason.rawValue, detail: detail,
                                                dropped: Dictionary(uniqueKeysWithValues: drops.map { ($0.key.rawValue, $0.value) })))
        }
    }

    func answerProbe(_ frames: [Message]) {
        guard (try? Envelope(frames: frames.dropFirst().map(\.data)).decode(StatusQuery.self)) != nil else {
            return drop(.malformedControl, detail: "unrecognised control message on the packet socket")
        }
        let report = StatusReport(service: "relay", id: config.relayId.rawValue, startedAt: startedAt, counters: [
            "links": JSONValue(links.count), "packetsForwarded": JSONValue(totals.packetsForwarded),
            "payloadBytesForwarded": JSONValue(totals.payloadBytesForwarded), "dropped": JSONValue(totals.dropped),
            "peakQueued": JSONValue(totals.peakQueued), "queued": JSONValue(links.values.reduce(0) { $0 + $1.queued }),
            "drops": .object(drops.byName), "advertise": .string(config.advertise), "welcomed": .bool(welcomed),
        ])
        if let reply = try? report.frames() {
            _ = try? router.send([frames[0].data] + reply, dontWait: true)
        }
    }
}
