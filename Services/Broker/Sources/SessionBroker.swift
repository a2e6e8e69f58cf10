import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import Logging
import Metrics
import OrderedCollections

/// What the broker counts: its status (`ferry status`) shows each once non-zero, and
/// Prometheus as `ferry_broker_events_total{event}`. docs/protocol.md lists them all (a test
/// checks it).
enum BrokerCount: String, CaseIterable {
    case contentWithdrawn = "content.withdrawn"
    case controlDropped = "control.dropped"
    case controlUnknown = "control.unknown"
    case controlUnsent = "control.unsent"
    case changesIdle = "changes.idle"
    case decisionsDropped = "decisions.dropped"
    case devicesBanned = "devices.banned"
    case devicesRevoked = "devices.revoked"
    case recordsUnsent = "records.unsent"
    case relaysEvicted = "relays.evicted"
    case requestsOrigin = "requests.origin"
    case requestsRetried = "requests.retried"
    case sendersSilent = "senders.silent"
    case sessionsBrokered = "sessions.brokered"
    case sessionsClosed = "sessions.closed"
    case sessionsFailed = "sessions.failed"
    case sessionsRepathed = "sessions.repathed"
    case sessionsReplanned = "sessions.replanned"
    case sessionsUnopened = "sessions.unopened"
    case silentUnsent = "silent.unsent"
    case takenUnsent = "taken.unsent"
}

/// Step (c)'s decisions: which session a match decision becomes (sender, relay, overlay
/// addresses), the control dialog with agents and relays, new paths when one breaks, bans,
/// evictions, revocations, withdrawals and deadlines. It holds the state and returns effects
/// (messages to send, events to publish, keys to forget); `Broker`'s loop carries them out.
final class SessionBroker {
    let config: BrokerConfig
    let logger: Logger
    let heartbeat: Duration
    let startedAt = Timestamp.now()
    /// Signs session tokens. Made fresh each start and announced to relays in their welcome:
    /// a token only has to outlive the broker's own sessions.
    let tokenKey = SigningKey.random()

    var pool: AddressPool
    var relays = RelayDirectory()
    var agents: [DeviceID: (lastSeen: ContinuousClock.Instant, zone: String?, forwarder: RelayID?)] = [:]
    var sessions: [SessionID: BrokeredSession] = [:]
    /// How each request id was answered, so a retry gets the same answer, never a second session.
    var outcomes: [RequestID: (outcome: Outcome, at: ContinuousClock.Instant)] = [:]
    var counters: [BrokerCount: Int] = [:]
    var withdrawn = Set<ContentID>()
    /// Senders whose chunks of a content failed a receiver's verification: never chosen to
    /// send that content again (for this broker's life).
    var banned: [ContentID: Set<DeviceID>] = [:]
    var blame = BlameLedger()
    /// Relays evicted for carrying packets that failed with two different senders; their
    /// hellos are refused from then on.
    var evicted = Set<RelayID>()
    /// Devices revoked at the origin.
    var revoked = Set<DeviceID>()
    /// The sessions of requests with a session still open, as the reporter is told of them.
    var requestSessions: [RequestID: [SessionRecord]] = [:]
    /// A request whose sessions keep breaking goes to the origin rather than round and round.
    static let maxRepaths = 3

    enum Outcome {
        /// Sessions serve it: one, or one per stripe (`sessions` holds them).
        case brokered
        case origin(OriginDirective)
        case finished(SessionID?)
    }

    init(config: BrokerConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        pool = try AddressPool(cidr: config.addressPool)
        heartbeat = .milliseconds(config.heartbeatMilliseconds)
        nextHeartbeat = .now
    }

    // MARK: inputs

    /// A message on the decisions socket: the matcher's decision, or a notice.
    func decision(_ frames: [Data]) -> [Effect] {
        handleDecision(frames)
        return takeEffects()
    }

    /// A message on the control socket, `[routing id, version, kind, body]`. `peer`: who the
    /// key gate says sent it, with transport keys.
    func control(_ frames: [Data], peer: PeerKey?, now: ContinuousClock.Instant = .now) -> [Effect] {
        handleControl(frames, peer: peer, now: now)
        return takeEffects()
    }

    /// Time passed: heartbeats and liveness, every heartbeat; session deadlines, always.
    func tick(now: ContinuousClock.Instant = .now) -> [Effect] {
        if now >= nextHeartbeat {
            nextHeartbeat = now + heartbeat
            sendHeartbeats()
            expireParties(now: now)
        }
        checkDeadlines(now: now)
        activeSessions.record(sessions.count)
        return takeEffects()
    }

    /// A send the shell could not make (the peer's queue full, or no route).
    func unsent(_ consequence: IfUnsent) -> [Effect] {
        switch consequence {
        case .count(let name): count(name)
        case .abandon(let id, let reason): if let session = sessions[id] { abandon(session, reason: reason) }
        }
        return takeEffects()
    }

    // MARK: effects

    /// Where a message goes: a party by its id, a connection by the routing id it came on (a
    /// probe), the reporter, or the matcher.
    enum Destination: Equatable {
        case party(String)
        case connection(Data)
        case reporter
        case matcher
    }

    /// What not being able to send means.
    enum IfUnsent: Equatable {
        case count(BrokerCount)
        case abandon(SessionID, reason: String)
    }

    enum Effect: Equatable {
        case send([Data], to: Destination, ifUnsent: IfUnsent)
        case publish(Publication)
        /// With transport keys: stop admitting a revoked party's key.
        case forget(String)
    }

    private var effects: [Effect] = []
    private var nextHeartbeat: ContinuousClock.Instant

    private func takeEffects() -> [Effect] {
        defer { effects.removeAll(keepingCapacity: true) }
        return effects
    }

    func publish<Payload: EventPayload>(_ payload: Payload, requestId: RequestID? = nil, sessionId: SessionID? = nil) {
        effects.append(.publish(Publication(payload, requestId: requestId, sessionId: sessionId)))
    }

    let activeSessions = Gauge(label: "ferry_sessions_active")
    let sessionSeconds = Metrics.Timer(label: "ferry_session_duration_seconds", preferredDisplayUnit: .seconds)

    /// Counts for `ferry status` and, as `ferry_broker_<name>_total`, for Prometheus.
    func count(_ name: BrokerCount) {
        counters[name, default: 0] += 1
        Counter(label: "ferry_broker_events_total", dimensions: [("event", name.rawValue)]).increment()
    }

    // MARK: decisions (PULL from the matcher)

    func handleDecision(_ frames: [Data]) {
        switch PipelineNotice(frames: frames) {
        case .withdrawn(let withdrawal)?: return withdraw(withdrawal)
        case .revoked(let revocation)?: return revoke(revocation.deviceId)
        case nil: break
        }
        if frames.count == 3, frames[1] == Data(SourceChange.kind.utf8) { return changeSources(frames) }
        let decision: MatchDecision
        do {
            decision = try MatchDecision.decode(frames: frames)
        } catch {
            count(.decisionsDropped)
            publish(EventData.MessageDropped(service: "broker", reason: "\(error)"))
            return
        }
        let match = decision.match
        let request = match.request
        if let known = outcomes[request.requestId] {
            resend(known.outcome, for: match)
            return
        }
        guard !withdrawn.contains(request.content.contentId) else {
            count(.sessionsFailed)
            publish(EventData.SessionFailed(reason: "withdrawn"), requestId: request.requestId)
            return
        }
        guard agents[request.deviceId] != nil else {
            // Nothing can reach the device; no outcome is stored, so its retry is decided afresh.
            count(.sessionsFailed)
            publish(EventData.SessionFailed(reason: "receiver-not-connected", deviceId: request.deviceId.rawValue), requestId: request.requestId)
            return
        }
        let fit = decision.sources.filter { banned[request.content.contentId]?.contains($0) != true }
        if let stripes = decision.stripes { return openStripes(match, stripes) }
        guard let sender = fit.first(where: { agents[$0] != nil }) else {
            let reason = decision.sources.isEmpty ? (decision.reason ?? OriginReason.noHolder.rawValue)
                : fit.isEmpty ? OriginReason.everyHolderBanned.rawValue : OriginReason.sourceNotConnected.rawValue
            directToOrigin(match, reason: reason)
            return
        }
        guard let relay = relays.choose(zone: agents[request.deviceId]?.zone, sender: sender, forwarder: agents[sender]?.forwarder) else {
            directToOrigin(match, reason: OriginReason.noRelay.rawValue)
            return
        }
        open(match, sender: sender, relay: relay, alternatives: fit.filter { $0 != sender }, repaths: 0)
    }

    /// Several devices send at once: a session per stripe, each from the first of its sources
    /// that can send, every other source named being where a new path for it may come from. A
    /// stripe none can send goes to the origin alone; with none at all, the whole request does.
    func openStripes(_ match: MatchRequest, _ stripes: [[DeviceID]]) {
        let content = match.request.content.contentId
        let fit = { self.canSend($0, content) }
        guard stripes.contains(where: { $0.contains(where: fit) }) else {
            return directToOrigin(match, reason: OriginReason.sourceNotConnected.rawValue)
        }
        let everyone = OrderedSet(stripes.joined())
        for (index, sources) in stripes.enumerated() {
            let stripe = Stripe(index, of: stripes.count)
            guard let sender = sources.first(where: fit) else {
                directToOrigin(match, reason: OriginReason.sourceNotConnected.rawValue, stripe: stripe)
                continue
            }
            guard let relay = relays.choose(zone: agents[match.request.deviceId]?.zone, sender: sender, forwarder: agents[sender]?.forwarder) else {
                directToOrigin(match, reason: OriginReason.noRelay.rawValue, stripe: stripe)
                continue
            }
            let alternatives = Array(OrderedSet(sources + everyone).filter { $0 != sender })
            open(match, sender: sender, relay: relay, alternatives: alternatives, repaths: 0, stripe: stripe)
        }
    }

    /// The swarm plan moved a device still getting content: its running session for it gets a
    /// new path from the plan's sources. A re-plan is no broken path: it does not count toward
    /// `maxRepaths`. With no session running (not open yet, or done) there is nothing to change.
    func changeSources(_ frames: [Data]) {
        let change: SourceChange
        do {
            change = try SourceChange.decode(frames: frames)
        } catch {
            count(.decisionsDropped)
            publish(EventData.MessageDropped(service: "broker", reason: "\(error)", kind: SourceChange.kind))
            return
        }
        guard let session = sessions.values.first(where: {
            $0.receiver == change.deviceId && $0.request.content.contentId == change.contentId && $0.isActive && $0.receiverOutcome == nil
        }), change.sources.first != session.sender else {
            count(.changesIdle)
            // The plan counts on the move: it hears which path stays, if one does.
            if let staying = sessions.values.first(where: {
                $0.receiver == change.deviceId && $0.request.content.contentId == change.contentId && !$0.isSuperseded && $0.receiverOutcome == nil
            }) { tellMatcher(staying.match, sender: staying.sender, stripe: staying.stripe) }
            return
        }
        repath(session, reason: change.reason, sender: .these(change.sources), relay: .alive, replanned: true)
    }

    /// Where a request of one source now comes from (`source.taken`), for the swarm plan. A
    /// striped request's device is in no swarm.
    private func tellMatcher(_ match: MatchRequest, sender: DeviceID?, stripe: Stripe?) {
        guard stripe == nil else { return }
        send(SourceTaken(deviceId: match.request.deviceId, contentId: match.request.content.contentId, sender: sender), to: .matcher,
             ifUnsent: .count(.takenUnsent))
    }

    /// Connected, and not caught sending this content corrupt.
    private func canSend(_ device: DeviceID, _ content: ContentID) -> Bool {
        agents[device] != nil && banned[content]?.contains(device) != true
    }

    /// Who sends on a new path: the same sender (still fit), the next holder the matcher
    /// offered, the next one and the same sender only when none is left, or the swarm plan's.
    enum NextSender: Equatable { case same, another, anotherThenSame, these([DeviceID]) }

    /// The broken path's relay: still up (and used again if it is the best), up but to be
    /// avoided, or gone (nobody to cancel, nothing to wait for).
    enum OldRelay { case alive, avoided, gone }

    /// A session's path broke: its relay or its sender is gone, or the sender sent chunks that
    /// failed verification. The session ends, and the receiver, which keeps every chunk it
    /// verified, gets a new one: from the same sender if it is still fit, else the next holder
    /// the matcher offered, through a live relay other than the lost one; with neither, the
    /// origin. The receiver was told to wait for it, so nothing is fetched twice.
    func repath(_ session: BrokeredSession, reason: String, sender next: NextSender, relay old: OldRelay, replanned: Bool = false) {
        guard !session.isSuperseded, session.receiverOutcome == nil || session.receiverAwaitsNewPath else { return }
        let match = session.match
        let content = match.request.content.contentId
        send(SessionCancel(sessionId: session.id, reason: reason, newPathFollows: true), to: session.receiver.rawValue)
        let senderAlive = agents[session.sender] != nil
        if senderAlive { send(SessionCancel(sessionId: session.id, reason: reason), to: session.sender.rawValue) }
        if old != .gone { send(SessionCancel(sessionId: session.id, reason: reason), to: session.relay.id.rawValue) }
        // Its addresses and relay place are held until the live parties report what they carried.
        session.supersede(until: .now + .seconds(5), senderAlive: senderAlive, relayAlive: old != .gone)
        count(replanned ? .sessionsReplanned : .sessionsFailed)
        publish(EventData.SessionFailed(reason: reason, newPath: true), requestId: match.request.requestId, sessionId: session.id)
        if session.supersededAndReported { close(session) }
        guard agents[session.receiver] != nil else { return }
        guard replanned || session.repaths < Self.maxRepaths else {
            return directToOrigin(match, reason: "\(reason); too many broken paths", stripe: session.stripe)
        }
        let candidates: [DeviceID] = switch next {
        case .same: [session.sender] + session.alternatives
        case .another: session.alternatives
        case .anotherThenSame: session.alternatives + [session.sender]
        case .these(let sources): sources
        }
        guard let sender = candidates.first(where: { canSend($0, content) }) else {
            return directToOrigin(match, reason: "\(reason); no other holder", stripe: session.stripe)
        }
        guard let relay = relays.choose(zone: agents[session.receiver]?.zone, excluding: old == .alive ? [] : [session.relay.id],
                                        sender: sender, forwarder: agents[sender]?.forwarder) else {
            return directToOrigin(match, reason: "\(reason); no relay", stripe: session.stripe)
        }
        count(.sessionsRepathed)
        publish(EventData.SessionRepathed(reason: reason, sender: sender.rawValue, relayId: relay.id.rawValue, previousSender: session.sender.rawValue,
                                          previousRelayId: session.relay.id.rawValue), requestId: match.request.requestId, sessionId: session.id)
        open(match, sender: sender, relay: relay, alternatives: candidates.filter { $0 != sender }, repaths: session.repaths + (replanned ? 0 : 1),
             stripe: session.stripe)
    }

    /// A receiver found chunks from `device` that fail verification: it never sends this
    /// content again through this broker.
    func ban(_ device: DeviceID, from session: BrokeredSession, rejectedChunks: Int, unopenedChunks: Int) {
        let content = session.request.content.contentId
        guard banned[content, default: []].insert(device).inserted else { return }
        count(.devicesBanned)
        logger.warning("device banned for sending corrupt chunks", metadata: ["device.id": "\(device)", "content.id": "\(content.hex)"])
        publish(EventData.DeviceBanned(deviceId: device.rawValue, contentId: content.hex, rejectedChunks: rejectedChunks,
                                       reportedBy: session.receiver.rawValue,
                                       // `hash`: bytes only a key holder could make; `tag`: packets failed through two or more relays.
                                       cause: unopenedChunks > 0 ? "tag" : "hash", relays: blame.partners(ofSender: device)),
                requestId: session.request.requestId, sessionId: session.id)
    }

    /// A relay through which two senders' packets failed their tags: it gets no new sessions,
    /// its running ones get new paths, and its hellos are refused from now on. True if it was
    /// in the directory.
    @discardableResult
    func evict(_ id: RelayID) -> Bool {
        guard evicted.insert(id).inserted else { return false }
        count(.relaysEvicted)
        logger.warning("relay evicted: packets of two senders failed through it", metadata: ["relay.id": "\(id)"])
        guard let relay = relays.remove(id) else { return false }
        relayGone(relay, reason: "evicted")
        return true
    }

    /// A device revoked at the origin: it is forgotten, its sessions end (a receiver of its
    /// content gets a new path), and it is never welcomed again by this broker.
    func revoke(_ device: DeviceID) {
        guard revoked.insert(device).inserted else { return }
        count(.devicesRevoked)
        effects.append(.forget(device.rawValue))
        // Relays enrol and are revoked like devices, under their own ids.
        if let id = try? RelayID(device.rawValue), let relay = relays.remove(id) { relayGone(relay, reason: "revoked") }
        if agents.removeValue(forKey: device) != nil {
            publish(EventData.DeviceLost(deviceId: device.rawValue, reason: "revoked"))
        }
        for session in sessions.values where session.receiver == device && !session.isSuperseded {
            send(SessionCancel(sessionId: session.id, reason: CancelReason.receiverRevoked.rawValue), to: session.sender.rawValue)
            send(SessionCancel(sessionId: session.id, reason: CancelReason.receiverRevoked.rawValue), to: session.relay.id.rawValue)
            send(SessionCancel(sessionId: session.id, reason: CancelReason.revoked.rawValue), to: device.rawValue)
            close(session, reason: CancelReason.receiverRevoked.rawValue)
        }
        for session in sessions.values where session.sender == device && !session.isSuperseded && session.receiverOutcome == nil {
            send(SessionCancel(sessionId: session.id, reason: CancelReason.revoked.rawValue), to: device.rawValue)
            repath(session, reason: CancelReason.senderRevoked.rawValue, sender: .another, relay: .alive)
        }
    }

    /// Content withdrawn by the server: its sessions end, and every device drops its copy.
    func withdraw(_ withdrawal: ContentWithdrawn) {
        withdrawn.insert(withdrawal.contentId)
        for session in Array(sessions.values) where session.request.content.contentId == withdrawal.contentId {
            // Not opened yet: it never will be, rather than open when its relay is ready.
            if session.awaitsRelay {
                abandon(session, reason: OriginReason.withdrawn.rawValue)
                continue
            }
            for party in [session.receiver.rawValue, session.sender.rawValue, session.relay.id.rawValue] {
                send(SessionCancel(sessionId: session.id, reason: CancelReason.withdrawn.rawValue), to: party)
            }
        }
        for device in agents.keys { send(withdrawal, to: device.rawValue) }
        count(.contentWithdrawn)
    }

    func open(_ match: MatchRequest, sender: DeviceID, relay: RelayDirectory.Relay, alternatives: [DeviceID], repaths: Int, stripe: Stripe? = nil) {
        let request = match.request
        let exhausted = OriginReason.addressPoolExhausted.rawValue
        guard let receiverAddress = pool.allocate() else { return directToOrigin(match, reason: exhausted, stripe: stripe) }
        guard let senderAddress = pool.allocate() else {
            pool.release(receiverAddress)
            return directToOrigin(match, reason: exhausted, stripe: stripe)
        }
        guard let relayAddress = pool.allocate() else {
            pool.release(receiverAddress)
            pool.release(senderAddress)
            return directToOrigin(match, reason: exhausted, stripe: stripe)
        }
        let session = BrokeredSession(id: SessionID.random(), match: match, sender: sender, relay: relay,
                                      receiverAddress: receiverAddress, senderAddress: senderAddress, relayAddress: relayAddress,
                                      window: config.window, bytesPerSecond: config.sessionBytesPerSecond,
                                      alternatives: alternatives, repaths: repaths, stripe: stripe, deadline: .now + .seconds(5))
        sessions[session.id] = session
        outcomes[request.requestId] = (.brokered, .now)
        relays.adjustSessions(relay.id, by: 1)
        count(.sessionsBrokered)
        record(session, closed: false)
        // Published before any connection information goes out, so the stream reads in claim order.
        publish(EventData.SessionBrokered(sender: sender.rawValue, receiver: request.deviceId.rawValue, relays: [relay.id.rawValue],
                                          relayEndpoint: relay.endpoint,
                                          addresses: EventData.Addresses(sender: senderAddress, receiver: receiverAddress, relay: relayAddress),
                                          window: config.window, traceId: match.traceId, stripe: stripe), requestId: request.requestId, sessionId: session.id)
        // Before the link.open: if that can't be sent, the shell carries out the abandon's
        // effects at once, and the matcher must hear of the origin last.
        tellMatcher(match, sender: sender, stripe: stripe)
        send(session.linkOpen, to: relay.id.rawValue, ifUnsent: .abandon(session.id, reason: OriginReason.relayUnreachable.rawValue))
    }

    /// The origin serves the request, or only `stripe` of it (the request's other stripes keep
    /// their sessions).
    func directToOrigin(_ match: MatchRequest, reason: String, stripe: Stripe? = nil) {
        let request = match.request
        let directive = OriginDirective(requestId: request.requestId, traceId: match.traceId, content: request.content, reason: reason, stripe: stripe)
        if !hasLiveSessions(request.requestId) { outcomes[request.requestId] = (.origin(directive), .now) }
        count(.requestsOrigin)
        record(RequestRecord(requestId: request.requestId, deviceId: request.deviceId, contentId: request.content.contentId,
                             server: request.server, sessions: requestSessions[request.requestId] ?? []))
        publish(EventData.SessionOriginDirected(reason: reason, deviceId: request.deviceId.rawValue, stripe: stripe), requestId: request.requestId)
        send(directive, to: request.deviceId.rawValue)
        tellMatcher(match, sender: nil, stripe: stripe)
    }

    func resend(_ outcome: Outcome, for match: MatchRequest) {
        let requestId = match.request.requestId
        count(.requestsRetried)
        switch outcome {
        case .brokered:
            for session in sessions.values where session.request.requestId == requestId && !session.isSuperseded {
                // Before the relay is ready the device has nothing yet; it gets its session.open then.
                let resent = session.isActive
                if resent { send(session.open(for: .receiver, key: tokenKey), to: session.receiver.rawValue) }
                publish(EventData.SessionResent(state: resent ? "active" : "awaiting-relay"), requestId: requestId, sessionId: session.id)
            }
        case .origin(let directive):
            publish(EventData.SessionResent(state: "origin"), requestId: requestId)
            send(directive, to: match.request.deviceId.rawValue)
        case .finished(let id):
            publish(EventData.SessionResent(state: "finished"), requestId: requestId, sessionId: id)
        }
    }

    // MARK: control dialog (ROUTER)

    func handleControl(_ frames: [Data], peer: PeerKey?, now: ContinuousClock.Instant) {
        guard frames.count == 4 else {
            count(.controlDropped)
            return
        }
        let routingId = frames[0]
        let identity = peer?.party ?? String(decoding: routingId, as: UTF8.self)
        let envelope: Envelope
        do {
            envelope = try Envelope(frames: Array(frames.dropFirst()))
        } catch {
            count(.controlDropped)
            publish(EventData.MessageDropped(service: "broker", reason: "\(error)", peer: identity))
            return
        }
        if let peer, peer.party == nil, envelope.kind != StatusQuery.kind {
            // A service's key (a probe, the operator) may ask how things are, never speak for a party.
            count(.controlDropped)
            publish(EventData.MessageDropped(service: "broker", reason: "only devices and relays take part in the dialog", kind: envelope.kind,
                                             peer: peer.who?.userId ?? ""))
            return
        }
        do {
            try dispatch(envelope, from: identity, routingId: routingId, peer: peer, now: now)
        } catch {
            count(.controlDropped)
            logger.warning("control message refused: \(error)", metadata: ["peer": "\(identity)", "kind": "\(envelope.kind)"])
            publish(EventData.MessageDropped(service: "broker", reason: "\(error)", kind: envelope.kind, peer: identity))
        }
    }

    /// `identity` names an agent or relay (their routing ids are their ids); replies to anyone
    /// else, such as a status probe with a generated binary id, go back to the raw `routingId`.
    /// `peer`: who the gate said the sender is, when security is on.
    func dispatch(_ envelope: Envelope, from identity: String, routingId: Data, peer: PeerKey?, now: ContinuousClock.Instant) throws {
        if let device = try? DeviceID(identity), agents[device] != nil { agents[device]!.lastSeen = now }
        if let relay = try? RelayID(identity) { relays.heard(relay, now: now) }
        switch envelope.kind {
        case AgentHello.kind:
            let hello = try envelope.decode(AgentHello.self)
            guard hello.deviceId.rawValue == identity else { throw WireError.invalid("hello names \(hello.deviceId) but came from \(identity)") }
            guard !revoked.contains(hello.deviceId) else { throw WireError.invalid("device \(identity) was revoked") }
            if let peer, peer.who != .device(identity) { throw WireError.invalid("a device's hello from \(peer.who?.userId ?? "no key")") }
            if agents[hello.deviceId] == nil {
                logger.info("device joined", metadata: ["device.id": "\(identity)"])
                publish(EventData.DeviceJoined(deviceId: identity, zone: hello.zone))
            }
            agents[hello.deviceId] = (now, hello.zone, hello.forwarder)
            send(Welcome(heartbeatMilliseconds: config.heartbeatMilliseconds, tokenKey: tokenKey.publicKey), to: identity)
        case RelayHello.kind:
            let hello = try envelope.decode(RelayHello.self)
            guard hello.relayId.rawValue == identity else { throw WireError.invalid("hello names \(hello.relayId) but came from \(identity)") }
            if let peer, peer.who != .relay(identity) { throw WireError.invalid("a relay's hello from \(peer.who?.userId ?? "no key")") }
            guard !revoked.contains(where: { $0.rawValue == identity }) else { throw WireError.invalid("relay \(identity) was revoked") }
            guard !evicted.contains(where: { $0.rawValue == identity }) else { throw WireError.invalid("relay \(identity) was evicted") }
            // Devices are told to expect the key the relay proved here, never one it claimed.
            if relays.register(hello.relayId, endpoint: hello.endpoint, zone: hello.zone, key: peer?.key, forwardsFor: hello.forwardsFor, now: now) {
                logger.info("relay joined", metadata: ["relay.id": "\(identity)", "endpoint": "\(hello.endpoint)"])
                publish(EventData.RelayJoined(relayId: identity, endpoint: hello.endpoint, forwardsFor: hello.forwardsFor?.rawValue))
            }
            send(Welcome(heartbeatMilliseconds: config.heartbeatMilliseconds, tokenKey: tokenKey.publicKey), to: identity)
        case RelayDraining.kind:
            let draining = try envelope.decode(RelayDraining.self)
            guard draining.relayId.rawValue == identity, relays.relays[draining.relayId] != nil else { return count(.controlUnknown) }
            relays.markDraining(draining.relayId)
            logger.info("relay draining", metadata: ["relay.id": "\(identity)", "sessions": "\(draining.sessions)"])
            publish(EventData.RelayDraining(relayId: identity, sessions: draining.sessions, deadlineMilliseconds: draining.deadlineMilliseconds))
        case Heartbeat.kind:
            let beat = try envelope.decode(Heartbeat.self)
            if let relay = try? RelayID(identity), relays.relays[relay] != nil { relays.heard(relay, load: beat.load, now: now) }
        case LinkReady.kind:
            let ready = try envelope.decode(LinkReady.self)
            guard let session = sessions[ready.sessionId] else { return count(.controlUnknown) }
            guard session.relay.id.rawValue == identity, session.awaitsRelay else { return }
            session.relayReady(now: now)
            send(session.open(for: .receiver, key: tokenKey), to: session.receiver.rawValue)
            send(session.open(for: .sender, key: tokenKey), to: session.sender.rawValue)
        case LinkClosed.kind:
            let closed = try envelope.decode(LinkClosed.self)
            // Unknown is also a relay's late report on a session closed without waiting for it.
            guard let session = sessions[closed.sessionId] else { return count(.controlUnknown) }
            guard session.relay.id.rawValue == identity else { return }
            session.relayReport = closed
            if session.isSuperseded {
                session.noLongerAwaiting(.relay)
                return session.supersededAndReported ? close(session) : ()
            }
            // The path is gone; give the receiver a moment to report, then close without it.
            if session.receiverOutcome == nil { session.closing(until: now + .seconds(10)) }
            settleIfDone(session)
        case SessionFinished.kind:
            let finished = try envelope.decode(SessionFinished.self)
            guard let session = sessions[finished.sessionId] else { return count(.controlUnknown) }
            switch finished.role {
            case .receiver:
                guard session.receiver.rawValue == identity else { throw WireError.invalid("only the receiver reports for it") }
                session.receiverOutcome = finished
                guard !session.isSuperseded else { return }
                if let rejected = finished.rejectedChunks, rejected > 0 {
                    let unopened = finished.unopenedChunks ?? 0
                    let failure: BlameLedger.Failure = unopened > 0 ? .unopened(sender: session.sender, relay: session.relay.id)
                                                                    : .wrongChunk(sender: session.sender)
                    var relayEvicted = false
                    for verdict in blame.record(failure) {
                        switch verdict {
                        case .banSender(let sender): ban(sender, from: session, rejectedChunks: rejected, unopenedChunks: unopened)
                        case .evictRelay(let relay): relayEvicted = evict(relay) || relayEvicted
                        }
                    }
                    if unopened > 0 {
                        count(.sessionsUnopened)
                        publish(EventData.SessionFailed(unopenedPacketsFrom: session.sender.rawValue, relayId: session.relay.id.rawValue,
                                                        unopenedChunks: unopened, senderRelays: blame.partners(ofSender: session.sender),
                                                        relaySenders: blame.partners(ofRelay: session.relay.id)),
                                requestId: session.request.requestId, sessionId: session.id)
                    }
                    // The next path avoids both the sender and the relay where it can; a sender not
                    // convicted stays a last resort, through another relay.
                    return repath(session, reason: CancelReason.corruptChunks.rawValue, sender: unopened > 0 ? .anotherThenSame : .another,
                                  relay: relayEvicted ? .gone : unopened > 0 ? .avoided : .alive)
                }
                if finished.reason == SenderSilent.reason, finished.payloadBytes == 0 {
                    // Nothing came from the sender: the matcher hears of it (it stops choosing a
                    // sender that does this repeatedly), and the receiver gets the next holder.
                    count(.sendersSilent)
                    let silent = SenderSilent(deviceId: session.sender, contentId: session.request.content.contentId,
                                              sessionId: session.id, requestId: session.request.requestId)
                    effects.append(.send(try silent.frames(), to: .matcher, ifUnsent: .count(.silentUnsent)))
                    return repath(session, reason: SenderSilent.reason, sender: .another, relay: .alive)
                }
                if finished.reason == FinishReason.slowerStripe.rawValue {
                    // Another stripe is done: a source with no stripe of this request still
                    // running takes the rest of the slower one (the slow one only if none).
                    let busy = Set(sessions.values.filter {
                        $0.request.requestId == session.request.requestId && !$0.isSuperseded && $0.receiverOutcome == nil
                    }.map(\.sender))
                    let free = session.alternatives.filter { !busy.contains($0) }
                    return repath(session, reason: FinishReason.slowerStripe.rawValue, sender: .these(free.isEmpty ? [session.sender] : free),
                                  relay: .alive, replanned: true)
                }
                if finished.reason == FinishReason.relayDisconnected.rawValue {
                    // The receiver lost the relay before the broker missed its heartbeats. A
                    // device's own relay goes with the device, so its sender is likely gone too;
                    // a fleet relay's sender is not.
                    let senderToo = session.relay.forwardsFor == session.sender
                    return repath(session, reason: CancelReason.relayLost.rawValue, sender: senderToo ? .anotherThenSame : .same, relay: .avoided)
                }
                if finished.outcome != .completed {
                    send(SessionCancel(sessionId: session.id, reason: finished.reason ?? "receiver-gave-up"), to: session.sender.rawValue)
                    send(SessionCancel(sessionId: session.id, reason: finished.reason ?? "receiver-gave-up"), to: session.relay.id.rawValue)
                }
            case .sender:
                guard session.sender.rawValue == identity else { throw WireError.invalid("only the sender reports for it") }
                session.senderOutcome = finished
                if session.isSuperseded {
                    session.noLongerAwaiting(.sender)
                    return session.supersededAndReported ? close(session) : ()
                }
            }
            settleIfDone(session)
        case StatusQuery.kind:
            send(status(), to: .connection(routingId))
        default:
            throw WireError.unknownKind(envelope.kind)
        }
    }

    /// A session closes once the receiver is done and the relay has reported its counts (or
    /// has had a few seconds to).
    func settleIfDone(_ session: BrokeredSession) {
        guard session.receiverOutcome != nil, !session.isSuperseded else { return }
        if session.relayReport == nil {
            session.closing(until: .now + .seconds(5))
            return
        }
        close(session)
    }

    func close(_ session: BrokeredSession, reason: String? = nil) {
        guard sessions.removeValue(forKey: session.id) != nil else { return }
        for address in session.addresses { pool.release(address) }
        relays.adjustSessions(session.relay.id, by: -1)
        sessionSeconds.recordSeconds((ContinuousClock.now - session.openedAt).inSeconds)
        record(session, closed: true)
        // A superseded session's end was announced when its path broke; the request goes on.
        guard !session.isSuperseded else { return }
        // A striped request is finished when its last stripe's session is.
        if !hasLiveSessions(session.request.requestId) { outcomes[session.request.requestId] = (.finished(session.id), .now) }
        let outcome = session.receiverOutcome?.outcome ?? .failed
        count(.sessionsClosed)
        let request = session.request
        let ending = EventData.SessionEnding(outcome: outcome.rawValue, receiverPayloadBytes: session.receiverOutcome?.payloadBytes ?? 0,
                                             seconds: (ContinuousClock.now - session.openedAt).inSeconds,
                                             reason: reason ?? session.receiverOutcome?.reason,
                                             relayPayloadBytes: session.relayReport?.counters.payloadBytesForwarded,
                                             relayPackets: session.relayReport?.counters.packetsForwarded)
        if outcome == .completed {
            publish(EventData.SessionClosed(ending), requestId: request.requestId, sessionId: session.id)
        } else {
            publish(EventData.SessionFailed(ending), requestId: request.requestId, sessionId: session.id)
        }
    }

    /// Gives up on a session before any device got its connection information.
    func abandon(_ session: BrokeredSession, reason: String) {
        sessions[session.id] = nil
        for address in session.addresses { pool.release(address) }
        relays.adjustSessions(session.relay.id, by: -1)
        if !hasLiveSessions(session.request.requestId) { outcomes[session.request.requestId] = nil }
        // It never carried a byte: the reporter need not hear of it.
        let requestId = session.request.requestId
        requestSessions[requestId]?.removeAll { $0.sessionId == session.id }
        if requestSessions[requestId]?.isEmpty == true { requestSessions[requestId] = nil }
        count(.sessionsFailed)
        publish(EventData.SessionFailed(reason: reason), requestId: session.request.requestId, sessionId: session.id)
        send(SessionCancel(sessionId: session.id, reason: reason), to: session.relay.id.rawValue)
        directToOrigin(session.match, reason: reason, stripe: session.stripe)
    }

    /// A session still serves the request (not one a new path took over).
    func hasLiveSessions(_ requestId: RequestID) -> Bool {
        sessions.values.contains { $0.request.requestId == requestId && !$0.isSuperseded }
    }

    func checkDeadlines(now: ContinuousClock.Instant) {
        for session in sessions.values where session.deadline <= now {
            switch session.state {
            case .awaitingRelay: abandon(session, reason: OriginReason.relayTimeout.rawValue)
            case .closing, .superseded: close(session)
            case .active:
                send(SessionCancel(sessionId: session.id, reason: CancelReason.sessionLifetime.rawValue), to: session.receiver.rawValue)
                send(SessionCancel(sessionId: session.id, reason: CancelReason.sessionLifetime.rawValue), to: session.sender.rawValue)
                close(session)
            }
        }
        // Answers are kept an hour: long enough for any retry, bounded for a long-running broker.
        if outcomes.count > 10_000 {
            outcomes = outcomes.filter { now - $0.value.at < .seconds(3600) }
        }
    }

    // MARK: liveness

    func sendHeartbeats() {
        for device in agents.keys { send(Heartbeat(load: 0), to: device.rawValue) }
        for relay in relays.relays.keys { send(Heartbeat(load: 0), to: relay.rawValue) }
    }

    /// A relay gone (silent, or revoked): its sessions get a new path.
    func relayGone(_ relay: RelayDirectory.Relay, reason: String) {
        publish(EventData.RelayLost(relayId: relay.id.rawValue, endpoint: relay.endpoint, reason: reason))
        for session in sessions.values where session.relay.id == relay.id {
            if session.isSuperseded {
                session.noLongerAwaiting(.relay)
                if session.supersededAndReported { close(session) }
            } else if session.receiverOutcome == nil {
                repath(session, reason: CancelReason.relayLost.rawValue, sender: .same, relay: .gone)
            }
        }
    }

    func expireParties(now: ContinuousClock.Instant) {
        let limit = heartbeat * 5
        for relay in relays.expire(silentFor: limit, now: now) { relayGone(relay, reason: "silent") }
        for (device, state) in agents where now - state.lastSeen > limit {
            agents[device] = nil
            publish(EventData.DeviceLost(deviceId: device.rawValue, reason: "heartbeats-stopped"))
            for session in sessions.values where session.receiver == device && session.receiverOutcome == nil {
                send(SessionCancel(sessionId: session.id, reason: CancelReason.receiverLost.rawValue), to: session.sender.rawValue)
                send(SessionCancel(sessionId: session.id, reason: CancelReason.receiverLost.rawValue), to: session.relay.id.rawValue)
                close(session, reason: CancelReason.receiverLost.rawValue)
            }
            for session in sessions.values where session.sender == device {
                if session.isSuperseded {
                    session.noLongerAwaiting(.sender)
                    if session.supersededAndReported { close(session) }
                } else if session.receiverOutcome == nil {
                    repath(session, reason: CancelReason.senderLost.rawValue, sender: .another, relay: .alive)
                }
            }
        }
    }

    // MARK: sending

    func send<M: WireMessage>(_ message: M, to party: String, ifUnsent: IfUnsent = .count(.controlUnsent)) {
        send(message, to: .party(party), ifUnsent: ifUnsent)
    }

    func send<M: WireMessage>(_ message: M, to destination: Destination, ifUnsent: IfUnsent = .count(.controlUnsent)) {
        do {
            effects.append(.send(try message.frames(), to: destination, ifUnsent: ifUnsent))
        } catch {
            count(.controlUnsent)
            logger.debug("cannot encode \(M.kind): \(error)")
        }
    }

    /// Tells the reporter of a session opening or closing, with every earlier session of the
    /// request, so each record it keeps is whole.
    func record(_ session: BrokeredSession, closed: Bool) {
        let request = session.request
        var list = requestSessions[request.requestId] ?? []
        if let index = list.firstIndex(where: { $0.sessionId == session.id }) { list[index] = session.record(closed: closed) }
        else { list.append(session.record(closed: closed)) }
        let live = sessions.values.contains { $0.request.requestId == request.requestId }
        requestSessions[request.requestId] = live ? list : nil
        record(RequestRecord(requestId: request.requestId, deviceId: request.deviceId, contentId: request.content.contentId,
                             server: request.server, sessions: list))
    }

    func record(_ record: RequestRecord) {
        send(record, to: .reporter, ifUnsent: .count(.recordsUnsent))
    }

    func status() -> StatusReport {
        var fields = counters.byName
        fields["sessionsActive"] = JSONValue(sessions.count)
        fields["agents"] = JSONValue(agents.count)
        fields["addressesInUse"] = JSONValue(pool.allocated)
        fields["relays"] = .array(relays.relays.values.sorted { $0.id < $1.id }.map {
            .object(["id": .string($0.id.rawValue), "endpoint": .string($0.endpoint), "sessions": JSONValue($0.sessions),
                     "draining": .bool($0.draining), "key": JSONValue($0.key), "forwardsFor": JSONValue($0.forwardsFor?.rawValue)])
        })
        return StatusReport(service: "broker", id: "broker", startedAt: startedAt, counters: fields)
    }
}

/// What the broker's gate said of a control message's sender.
struct PeerKey {
    /// Nil only if a secured socket delivered a message without the gate's word (never expected).
    var who: TransportPeer?
    /// Base64 of the CURVE key it connected with.
    var key: String?

    /// The device's or relay's id; nil for a fleet service (a probe).
    var party: String? { who?.party }
}
