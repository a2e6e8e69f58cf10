import FerryLink
import FerryProtocol
import FerryService
import Foundation
import ZeroMQ

/// A device attached to a session, by the ROUTER it came through and the routing id it has
/// there: the relay's network endpoint, or, on a device's own relay, the local endpoint only
/// that device reaches (`RelayConfig.localBind`). Each ROUTER makes its own routing ids.
struct Neighbour: Hashable {
    enum Via: Hashable {
        case network
        case local
    }

    let via: Via
    let routingId: Data
}

/// A relay's virtual link for one session: the two neighbours it joins, what waits for each,
/// and its forwarding decisions (`SessionForwarding`). Toward a device the link answers
/// through the relay's ROUTER (devices only connect outward); toward a further relay it owns a
/// DEALER connected to that relay.
final class RelayLink {
    typealias Direction = SessionForwarding.Side

    let link: VirtualLink
    var forwarding: SessionForwarding
    /// Set when the next hop toward the receiver is another relay.
    let downstreamDealer: Socket?
    var towardReceiver: [[Message]] = []
    var towardSender: [[Message]] = []
    /// Frames either queue may hold: the end-to-end window bounds data, the rest is control.
    let queueLimit: Int
    /// The party attached on each side toward a device.
    var attached: [Direction: Neighbour] = [:]
    var rate: TokenBucket?
    /// Whether the rate limit has held packets back yet (said once, as an event).
    var throttled = false

    init(open: LinkOpen, relayId: RelayID, context: Context, security: TransportSecurity) throws {
        link = VirtualLink(sessionId: open.sessionId, requestId: open.requestId, address: open.address, role: .relay,
                           window: open.window, idleTimeout: .milliseconds(open.idleTimeoutMilliseconds))
        forwarding = SessionForwarding(open: open, relayId: relayId, downstreamIsRelay: open.downstream.endpoint != nil)
        queueLimit = open.window + 16
        if let limit = open.bytesPerSecond, limit > 0 { rate = TokenBucket(bytesPerSecond: limit) }
        if let endpoint = open.downstream.endpoint {
            let dealer = try Socket.linkDealer(context: context, address: security.isOn ? nil : open.address, window: open.window)
            try security.connect(dealer, endpoint, serverKey: open.downstream.key.flatMap { Data(base64Encoded: $0) }.map { Array($0) })
            downstreamDealer = dealer
        } else {
            downstreamDealer = nil
        }
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
