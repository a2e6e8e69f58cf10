import FerryLink
import FerryProtocol
import FerryService
import Foundation
import ZeroMQ

/// A relay's virtual link for one session: the two neighbours it joins, what waits for each,
/// and what it counted. Toward a device the link answers through the relay's ROUTER (devices
/// only connect outward); toward a further relay it owns a DEALER connected to that relay.
final class RelayLink {
    enum Direction { case towardSender, towardReceiver }

    let link: VirtualLink
    let upstream: LinkHop
    let downstream: LinkHop
    /// Set when the next hop toward the receiver is another relay.
    let downstreamDealer: Socket?
    var towardReceiver: [[Message]] = []
    var towardSender: [[Message]] = []
    /// Frames either queue may hold: the end-to-end window bounds data, the rest is control.
    let queueLimit: Int
    /// Data packets accepted toward the receiver, and the credit limit passed to the sender,
    /// clamped to that count plus the window: an honest receiver never grants more (it can't
    /// have consumed what the relay hasn't forwarded), and a receiver that grants without
    /// reading can't make the relay hold more than about two windows.
    var dataForwarded: UInt32 = 0
    var creditLimit: UInt32 = 0
    let window: UInt32
    var closingSince: ContinuousClock.Instant?
    var closeReason = "done"
    /// Sides whose party attached with a valid token from the broker; nothing else from a side
    /// is forwarded until then. The side toward a further relay is this relay's own connection.
    var authorised: Set<Direction> = []
    /// The ROUTER routing id of the party attached on each side toward a device.
    var routingIds: [Direction: Data] = [:]
    let quotaBytes: UInt64?
    var rate: TokenBucket?
    /// Whether the rate limit has held packets back yet (said once, as an event).
    var throttled = false

    init(open: LinkOpen, context: Context, security: TransportSecurity) throws {
        link = VirtualLink(sessionId: open.sessionId, requestId: open.requestId, address: open.address, role: .relay,
                           window: open.window, idleTimeout: .milliseconds(open.idleTimeoutMilliseconds))
        upstream = open.upstream
        downstream = open.downstream
        queueLimit = open.window + 16
        window = UInt32(open.window)
        quotaBytes = open.quotaBytes
        if let limit = open.bytesPerSecond, limit > 0 { rate = TokenBucket(bytesPerSecond: limit) }
        if let endpoint = open.downstream.endpoint {
            let dealer = try Socket.linkDealer(context: context, address: security.isOn ? nil : open.address, window: open.window)
            try security.connect(dealer, endpoint, serverKey: open.downstream.key.flatMap { Data(base64Encoded: $0) }.map { Array($0) })
            downstreamDealer = dealer
            authorised.insert(.towardReceiver)
        } else {
            downstreamDealer = nil
        }
    }

    /// Whether one more data packet of `bytes` stays within the session's quota.
    func withinQuota(_ bytes: Int) -> Bool {
        guard let quotaBytes else { return true }
        return link.counters.payloadBytesForwarded + UInt64(bytes) <= quotaBytes
    }

    /// Whether the rate limit lets `frames` go toward the receiver now, and what they will cost.
    /// Only data is limited, and it pays (`paid`) once really sent; the cost is read first,
    /// because sending hands the payload to libzmq and leaves the message empty.
    func rateAllows(_ frames: [Message]) -> (allowed: Bool, cost: Int) {
        guard rate != nil, frames.count == 2 else { return (true, 0) }
        let cost = frames[1].count
        if rate!.holds(cost) { return (true, cost) }
        throttled = true
        return (false, cost)
    }

    func paid(_ cost: Int) {
        if cost > 0 { _ = rate?.take(cost) }
    }

    var queued: Int { towardReceiver.count + towardSender.count }

    func close() { downstreamDealer?.close() }
}
