import FerryProtocol
import Foundation

/// The broker's record of one session: who sends, who receives, through which relay, on which
/// overlay addresses, and what each party has reported so far.
final class BrokeredSession {
    enum Phase { case awaitingRelay, active, closing }

    let id: SessionID
    let match: MatchRequest
    let sender: DeviceID
    let relay: RelayDirectory.Relay
    let receiverAddress: String
    let senderAddress: String
    let relayAddress: String
    let window: Int
    var phase = Phase.awaitingRelay
    var phaseDeadline: ContinuousClock.Instant
    var receiverOutcome: SessionFinished?
    var senderOutcome: SessionFinished?
    var relayReport: LinkClosed?
    let openedAt = ContinuousClock.now

    init(id: SessionID, match: MatchRequest, sender: DeviceID, relay: RelayDirectory.Relay, receiverAddress: String,
         senderAddress: String, relayAddress: String, window: Int, deadline: ContinuousClock.Instant) {
        self.id = id
        self.match = match
        self.sender = sender
        self.relay = relay
        self.receiverAddress = receiverAddress
        self.senderAddress = senderAddress
        self.relayAddress = relayAddress
        self.window = window
        self.phaseDeadline = deadline
    }

    var request: DownloadRequest { match.request }
    var receiver: DeviceID { match.request.deviceId }
    var addresses: [String] { [receiverAddress, senderAddress, relayAddress] }

    func open(for role: SessionRole) -> SessionOpen {
        SessionOpen(sessionId: id, requestId: request.requestId, traceId: match.traceId, role: role, content: request.content,
                    address: role == .receiver ? receiverAddress : senderAddress,
                    peerAddress: role == .receiver ? senderAddress : receiverAddress,
                    peerDevice: role == .receiver ? sender : receiver,
                    relayEndpoint: relay.endpoint, relays: [relay.id], window: window)
    }

    var linkOpen: LinkOpen {
        LinkOpen(sessionId: id, requestId: request.requestId, contentId: request.content.contentId, address: relayAddress,
                 upstream: LinkHop(address: senderAddress), downstream: LinkHop(address: receiverAddress),
                 window: window, idleTimeoutMilliseconds: 30_000)
    }
}
