import FerryProtocol
import FerryTrust
import Foundation

/// The broker's record of one session: who sends, who receives, through which relay, on which
/// overlay addresses, and what each party has reported so far.
final class BrokeredSession {
    /// Where a session is: every state it can be in, and what each waits for until when.
    enum State: Equatable {
        /// `link.open` went to the relay; the devices are told once it says the link is ready.
        case awaitingRelay(until: ContinuousClock.Instant)
        /// Both devices have their `session.open`.
        case active(until: ContinuousClock.Instant)
        /// The receiver has reported, or the relay closed first: the other's report is awaited.
        case closing(until: ContinuousClock.Instant)
        /// Its path broke and a new session took over the request. It waits only for the
        /// counts of the parties still alive, so the reporter can check what it carried, then
        /// closes without a word of its own.
        case superseded(until: ContinuousClock.Instant, awaiting: Set<Reporting>)
    }

    /// The parties a superseded session waits to hear from.
    enum Reporting: Hashable { case sender, relay }

    let id: SessionID
    let match: MatchRequest
    let sender: DeviceID
    let relay: RelayDirectory.Relay
    let receiverAddress: String
    let senderAddress: String
    let relayAddress: String
    let window: Int
    let bytesPerSecond: UInt64
    /// The other holders the matcher offered, best first: where a new path may come from.
    let alternatives: [DeviceID]
    /// How many sessions before this one served the same request and broke.
    let repaths: Int
    /// The stripe it brings, when several sessions serve the request at once.
    let stripe: Stripe?
    private(set) var state: State
    var receiverOutcome: SessionFinished?
    var senderOutcome: SessionFinished?
    var relayReport: LinkClosed?
    let openedAt = ContinuousClock.now

    init(id: SessionID, match: MatchRequest, sender: DeviceID, relay: RelayDirectory.Relay, receiverAddress: String,
         senderAddress: String, relayAddress: String, window: Int, bytesPerSecond: UInt64, alternatives: [DeviceID], repaths: Int,
         stripe: Stripe?, deadline: ContinuousClock.Instant) {
        self.stripe = stripe
        self.bytesPerSecond = bytesPerSecond
        self.alternatives = alternatives
        self.repaths = repaths
        self.id = id
        self.match = match
        self.sender = sender
        self.relay = relay
        self.receiverAddress = receiverAddress
        self.senderAddress = senderAddress
        self.relayAddress = relayAddress
        self.window = window
        state = .awaitingRelay(until: deadline)
    }

    var request: DownloadRequest { match.request }
    /// The receiver ended the session and waits for a new path: it found corrupt chunks, or its
    /// sender sent nothing.
    var receiverAwaitsNewPath: Bool {
        receiverOutcome?.rejectedChunks != nil || receiverOutcome?.reason == SenderSilent.reason
            || receiverOutcome?.reason == FinishReason.relayDisconnected.rawValue || receiverOutcome?.reason == FinishReason.slowerStripe.rawValue
    }
    var receiver: DeviceID { match.request.deviceId }
    var addresses: [String] { [receiverAddress, senderAddress, relayAddress] }

    /// Connection information for one party, with its token for the relay (valid a day: a
    /// session's own lifetime is an hour).
    func open(for role: SessionRole, key: SigningKey) -> SessionOpen {
        let address = role == .receiver ? receiverAddress : senderAddress
        let grant = SessionGrant(sessionId: id, relayId: relay.id, address: address, role: role,
                                 expiresAt: SessionTokens.nowMilliseconds() + 86_400_000, relayKey: relay.key,
                                 deviceId: role == .receiver ? receiver : sender)
        return SessionOpen(sessionId: id, requestId: request.requestId, traceId: match.traceId, role: role, content: request.content,
                           address: address, peerAddress: role == .receiver ? senderAddress : receiverAddress,
                           peerDevice: role == .receiver ? sender : receiver,
                           relayEndpoint: relay.endpoint, relays: [relay.id], window: window,
                           token: try? SessionTokens.issue(grant, with: key), stripe: stripe)
    }

    /// What the relay may carry for it: its share of the content once, plus what a broken
    /// earlier try may make the sender send again (a window in flight and a chunk begun), with
    /// room to spare.
    var quotaBytes: UInt64 {
        let content = request.content
        let share = stripe.map { UInt64($0.chunks(of: content.chunkCount).count) * UInt64(content.chunkSize) } ?? content.size
        return share + share / 8 + UInt64(window) * UInt64(content.packetSize) * 2 + UInt64(content.chunkSize)
    }

    func record(closed: Bool) -> SessionRecord {
        SessionRecord(sessionId: id, sender: sender, relays: [relay.id], closed: closed,
                      relayPayloadBytes: relayReport?.counters.payloadBytesForwarded, senderPayloadBytes: senderOutcome?.payloadBytes,
                      forwardedBySender: relay.forwardsFor == sender ? true : nil)
    }

    var deadline: ContinuousClock.Instant {
        switch state {
        case .awaitingRelay(let until), .active(let until), .closing(let until), .superseded(let until, _): until
        }
    }

    var awaitsRelay: Bool { if case .awaitingRelay = state { true } else { false } }
    var isActive: Bool { if case .active = state { true } else { false } }
    var isSuperseded: Bool { if case .superseded = state { true } else { false } }

    /// A superseded session has nothing more to wait for once its live parties have reported.
    var supersededAndReported: Bool {
        if case .superseded(_, let awaiting) = state { awaiting.isEmpty } else { false }
    }

    /// The relay said the link is ready: the devices are told, and it may run an hour.
    func relayReady(now: ContinuousClock.Instant) {
        guard awaitsRelay else { return }
        state = .active(until: now + .seconds(3600))
    }

    /// One side is done; the other's report is awaited until `until` (a session already
    /// closing keeps its first deadline, a superseded one stays superseded).
    func closing(until: ContinuousClock.Instant) {
        switch state {
        case .awaitingRelay, .active: state = .closing(until: until)
        case .closing, .superseded: break
        }
    }

    /// A new path took over the request: this one waits for the reports of the parties alive.
    func supersede(until: ContinuousClock.Instant, senderAlive: Bool, relayAlive: Bool) {
        var awaiting = Set<Reporting>()
        if senderAlive && senderOutcome == nil { awaiting.insert(.sender) }
        if relayAlive && relayReport == nil { awaiting.insert(.relay) }
        state = .superseded(until: until, awaiting: awaiting)
    }

    /// A superseded session stops waiting for `party`: it reported, or it is gone.
    func noLongerAwaiting(_ party: Reporting) {
        guard case .superseded(let until, var awaiting) = state else { return }
        awaiting.remove(party)
        state = .superseded(until: until, awaiting: awaiting)
    }

    var linkOpen: LinkOpen {
        LinkOpen(sessionId: id, requestId: request.requestId, contentId: request.content.contentId, address: relayAddress,
                 upstream: LinkHop(address: senderAddress), downstream: LinkHop(address: receiverAddress),
                 window: window, idleTimeoutMilliseconds: 30_000, quotaBytes: quotaBytes,
                 bytesPerSecond: bytesPerSecond == 0 ? nil : bytesPerSecond)
    }
}
