import FerryProtocol
import FerryTrust
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
    let bytesPerSecond: UInt64
    /// The other holders the matcher offered, best first: where a new path may come from.
    let alternatives: [DeviceID]
    /// How many sessions before this one served the same request and broke.
    let repaths: Int
    var phase = Phase.awaitingRelay
    var phaseDeadline: ContinuousClock.Instant
    var receiverOutcome: SessionFinished?
    var senderOutcome: SessionFinished?
    var relayReport: LinkClosed?
    /// A new session took over the request after this one's path broke; this one only waits
    /// for the counts of the parties still alive, so the reporter can check what it carried.
    var superseded = false
    var relayLost = false
    var senderLost = false
    let openedAt = ContinuousClock.now

    init(id: SessionID, match: MatchRequest, sender: DeviceID, relay: RelayDirectory.Relay, receiverAddress: String,
         senderAddress: String, relayAddress: String, window: Int, bytesPerSecond: UInt64, alternatives: [DeviceID], repaths: Int,
         deadline: ContinuousClock.Instant) {
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
        self.phaseDeadline = deadline
    }

    var request: DownloadRequest { match.request }
    /// The receiver ended the session and waits for a new path: it found corrupt chunks, or its
    /// sender sent nothing.
    var receiverAwaitsNewPath: Bool {
        receiverOutcome?.rejectedChunks != nil || receiverOutcome?.reason == SenderSilent.reason
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
                           token: try? SessionTokens.issue(grant, with: key))
    }

    /// What the relay may carry for it: the content once, plus what a broken earlier try may
    /// make the sender send again (a window in flight and a chunk begun), with room to spare.
    var quotaBytes: UInt64 {
        let content = request.content
        return content.size + content.size / 8 + UInt64(window) * UInt64(content.packetSize) * 2 + UInt64(content.chunkSize)
    }

    func record(closed: Bool) -> SessionRecord {
        SessionRecord(sessionId: id, sender: sender, relays: [relay.id], closed: closed,
                      relayPayloadBytes: relayReport?.counters.payloadBytesForwarded, senderPayloadBytes: senderOutcome?.payloadBytes)
    }

    /// A superseded session has nothing more to wait for once its live parties have reported.
    var supersededAndReported: Bool {
        superseded && (relayReport != nil || relayLost) && (senderOutcome != nil || senderLost)
    }

    var linkOpen: LinkOpen {
        LinkOpen(sessionId: id, requestId: request.requestId, contentId: request.content.contentId, address: relayAddress,
                 upstream: LinkHop(address: senderAddress), downstream: LinkHop(address: receiverAddress),
                 window: window, idleTimeoutMilliseconds: 30_000, quotaBytes: quotaBytes,
                 bytesPerSecond: bytesPerSecond == 0 ? nil : bytesPerSecond)
    }
}
