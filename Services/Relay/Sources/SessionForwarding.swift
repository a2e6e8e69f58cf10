import FerryLink
import FerryProtocol
import FerryService
import FerryTrust
import Foundation

/// Steps (g) and (h) at a relay, for one session: which packet from which side is passed on,
/// rewritten or dropped, what the session's credit and quota allow, and when the session is
/// over. It only decides; `RelayLoop` reads the sockets, checks nothing itself and carries the
/// verdicts out. Per packet it reads a parsed header and allocates nothing unless it drops.
struct SessionForwarding {
    enum Side: Hashable, CustomStringConvertible {
        case towardSender, towardReceiver

        var opposite: Side { self == .towardSender ? .towardReceiver : .towardSender }
        var description: String { self == .towardSender ? "sender" : "receiver" }
    }

    /// Where the session is: forwarding, or closing (after a `done`, an abort, a cancel or the
    /// quota) with why and since when, so what is still queued gets a moment to leave.
    enum Phase: Equatable {
        case open
        case closing(reason: String, since: ContinuousClock.Instant)
    }

    /// What to do with one packet.
    enum Verdict: Equatable {
        /// Pass the frames on as they came, toward `side`.
        case forward(toward: Side)
        /// A credit, clamped: pass a credit for `limit` toward the sender instead.
        case forwardCredit(limit: UInt32)
        /// An attach: check its token (`authorise`), then pass it on without it.
        case checkAttach
        /// A credit that grants nothing new: nothing to pass on.
        case absorb
        /// The sender went past the session's quota: tell both sides, and close.
        case quotaExceeded
        case drop(RelayDrop, String)
    }

    let sessionId: SessionID
    let relayId: RelayID
    let window: UInt32
    let quotaBytes: UInt64?
    let downstreamIsRelay: Bool
    /// Each side's overlay address, which its party's token must name.
    let addresses: [Side: String]
    private(set) var phase = Phase.open
    /// Sides whose party attached with a valid token from the broker; nothing else from a side
    /// is forwarded until then. The side toward a further relay is this relay's own connection.
    private(set) var authorised: Set<Side>
    /// Data packets accepted toward the receiver, and the credit limit passed to the sender,
    /// clamped to that count plus the window: an honest receiver never grants more (it can't
    /// have consumed what the relay hasn't forwarded), and a receiver that grants without
    /// reading can't make the relay hold more than about two windows.
    private(set) var dataForwarded: UInt32 = 0
    private(set) var creditLimit: UInt32 = 0
    private(set) var counters = LinkCounters()

    init(open: LinkOpen, relayId: RelayID, downstreamIsRelay: Bool) {
        sessionId = open.sessionId
        self.relayId = relayId
        window = UInt32(open.window)
        quotaBytes = open.quotaBytes
        addresses = [.towardSender: open.upstream.address, .towardReceiver: open.downstream.address]
        self.downstreamIsRelay = downstreamIsRelay
        authorised = downstreamIsRelay ? [.towardReceiver] : []
    }

    var isClosing: Bool { phase != .open }
    var closeReason: String? { if case .closing(let reason, _) = phase { reason } else { nil } }

    /// Judges a packet that arrived from `side`; the shell then forwards it and, once the next
    /// hop took it, calls `forwarded`.
    mutating func judge(_ header: PacketHeader, from side: Side) -> Verdict {
        guard header.sessionId == sessionId else {
            return .drop(.sessionMismatch, "packet for session \(header.sessionId) on the link of \(sessionId)")
        }
        switch (header.kind, side) {
        case (.data, .towardSender), (.credit, .towardReceiver), (.done, .towardReceiver), (.attach, _), (.abort, _): break
        default: return .drop(.wrongDirection, "\(header.kind) packet from the \(side) side")
        }
        if header.kind == .attach {
            // The side toward a further relay is this relay's own connection: that relay checked
            // the receiver's token and passes its attach on without one.
            return side == .towardReceiver && downstreamIsRelay ? .forward(toward: .towardSender) : .checkAttach
        }
        guard authorised.contains(side) else {
            return .drop(.unauthorised, "\(header.kind) packet from the \(side) side of session \(sessionId) before a valid attach")
        }
        switch header.kind {
        case .data:
            // Credit counts packets as well as bounding sequence numbers: a sender repeating
            // sequence numbers it was granted gets no more through than the receiver granted.
            guard header.sequence < creditLimit, dataForwarded < creditLimit else {
                return .drop(.overCredit, "session \(sessionId) sent packet \(header.sequence) (\(dataForwarded) forwarded) with credit to \(creditLimit)")
            }
            // Counted as content bytes, without the seal, so every party counts the same bytes.
            guard header.length > UInt32(ContentSummary.sealOverhead) else {
                return .drop(.malformed, "data packet of \(header.length) bytes, no longer than its seal")
            }
            guard withinQuota(UInt64(header.length) - UInt64(ContentSummary.sealOverhead)) else {
                guard !isClosing else { return .drop(.quotaExceeded, "session \(sessionId) is closing") }
                phase = .closing(reason: RelayDrop.quotaExceeded.rawValue, since: .now)
                return .quotaExceeded
            }
            return .forward(toward: .towardReceiver)
        case .credit:
            let clamped = min(header.sequence, dataForwarded &+ window)
            guard clamped > creditLimit else { return .absorb }
            creditLimit = clamped
            return .forwardCredit(limit: clamped)
        default:
            return .forward(toward: side.opposite)
        }
    }

    /// Whether one more data packet of `bytes` content bytes stays within the session's quota.
    func withinQuota(_ bytes: UInt64) -> Bool {
        guard let quotaBytes else { return true }
        return counters.payloadBytesForwarded + bytes <= quotaBytes
    }

    /// The next hop took a packet `judge` let through: it counts, and a `done` or an abort
    /// starts the session's close.
    mutating func forwarded(_ header: PacketHeader) {
        switch header.kind {
        case .data:
            dataForwarded &+= 1
            counters.packetsForwarded += 1
            counters.payloadBytesForwarded += UInt64(header.length) - UInt64(ContentSummary.sealOverhead)
        case .done:
            counters.controlForwarded += 1
            close("done")
        case .abort:
            counters.controlForwarded += 1
            close("aborted")
        default:
            counters.controlForwarded += 1
        }
    }

    /// Checks an attach's token: the broker's signature, for this session, this relay, the
    /// address and role of that side; with transport keys, for the device whose key sent it
    /// (`peer`), without, for the routing id the frames came with (the party's overlay
    /// address). On a device's own relay, an attach through the local endpoint (`ownDevice`,
    /// which no CURVE key names) is for the sending side, by that device's token only. A side,
    /// once attached, is never handed to another connection (`bound`).
    mutating func authorise(_ attach: LinkAttach, from side: Side, identity: Data, bound: Data?, peer: TransportPeer?, ownDevice: DeviceID? = nil,
                            tokenKey: VerifyingKey?, secure: Bool, nowMilliseconds: Int64) throws {
        guard let token = attach.token else { throw TrustError.badToken("no token") }
        guard let tokenKey else { throw TrustError.badToken("no key from the broker yet") }
        let address = addresses[side] ?? ""
        let grant = try SessionTokens.check(token, key: tokenKey, session: sessionId, relay: relayId, address: address,
                                            role: side == .towardSender ? .sender : .receiver, nowMilliseconds: nowMilliseconds)
        if ownDevice != nil, side != .towardSender { throw TrustError.badToken("the local endpoint takes the sending side only") }
        let holder = grant.deviceId.map { "device \($0)" } ?? "no device"
        if !secure {
            guard identity == Data(address.utf8) else { throw TrustError.badToken("for another party") }
        } else if let ownDevice {
            guard grant.deviceId == ownDevice else { throw TrustError.badToken("for \(holder), not \(ownDevice), through the local endpoint") }
        } else {
            guard let device = grant.deviceId, peer == .device(device.rawValue) else {
                throw TrustError.badToken("for \(holder), presented by \(peer?.userId ?? "an unknown key")")
            }
        }
        if let bound, bound != identity { throw TrustError.badToken("the \(side) side is attached already") }
        authorised.insert(side)
    }

    /// Starts the close (the first reason holds); what is queued may still leave.
    mutating func close(_ reason: String, at now: ContinuousClock.Instant = .now) {
        guard phase == .open else { return }
        phase = .closing(reason: reason, since: now)
    }

    /// At a tick: why the session ends now, if it does: closing and its queues empty (or two
    /// seconds gone), or silent past its idle timeout.
    func ending(at now: ContinuousClock.Instant, queued: Int, idle: Bool) -> String? {
        switch phase {
        case .closing(let reason, let since): queued == 0 || now - since > .seconds(2) ? reason : nil
        case .open: idle ? "idle" : nil
        }
    }

    mutating func dropped() { counters.dropped += 1 }
    mutating func queuedPeak(_ queued: Int) { counters.peakQueued = max(counters.peakQueued, queued) }
}
