import FerryContent
import FerryLink
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import ZeroMQ

/// Step (h)(i): the second device's virtual link. It connects outward to the first relay and,
/// once the receiver has said which chunks it wants and granted credit, sends them as
/// numbered packets, never more than the credit allows.
final class SendingLink {
    let open: SessionOpen
    let link: VirtualLink
    let socket: Socket
    let file: FileBytes
    var want: [ChunkRange] = []
    var attached = false
    /// Position in `want`: range, chunk, packet index.
    var rangeIndex = 0
    var chunk = 0
    var packet = 0
    var blocked = false
    /// Stopped by the device's upload cap, not by credit or the socket.
    var throttled = false
    var finished: SessionOutcome?
    var finishReason: String?

    let key: PacketKey

    init(open: SessionOpen, file: FileBytes, key: PacketKey, context: Context, idleTimeout: Duration,
         security: TransportSecurity = .off, relayKey: [UInt8]? = nil) throws {
        self.key = key
        self.open = open
        self.file = file
        link = VirtualLink(sessionId: open.sessionId, requestId: open.requestId, address: open.address, role: .sender,
                           window: open.window, idleTimeout: idleTimeout)
        // With keys the relay knows this side by the device's key, so the routing id is its
        // own to choose; only plain TCP names the connection by its overlay address.
        socket = try Socket.linkDealer(context: context, address: security.isOn ? nil : open.address, window: open.window)
        try security.connect(socket, open.relayEndpoint, serverKey: relayKey)
        try socket.send(messages: LinkFrame.attach(open.sessionId, LinkAttach(role: .sender, want: [], token: open.token)), dontWait: true)
    }

    /// The verified manifest's layout: the agent opens a link only when the session's matches it.
    var summary: ContentSummary { key.layout }
    var hasMore: Bool { attached && rangeIndex < want.count }
    var wantsToWrite: Bool { hasMore && link.credit.canSend && finished == nil }

    func handle(_ frames: [Message]) throws {
        let packet = try LinkFrame(frames: frames[...])
        guard packet.header.sessionId == open.sessionId else { throw WireError.invalid("packet for another session") }
        link.touch()
        switch packet.header.kind {
        case .attach:
            let attach = try packet.decodeAttach()
            guard attach.role == .receiver, !attached else { return }
            guard attach.want.allSatisfy({ $0.start >= 0 && $0.start < $0.end && $0.end <= summary.chunkCount }) else {
                throw WireError.invalid("want-list names chunks the content doesn't have")
            }
            want = attach.want
            attached = true
            rangeIndex = 0
            chunk = want.first?.start ?? 0
            self.packet = 0
        case .credit:
            link.credit.grant(upTo: packet.header.sequence)
        case .done:
            finished = .completed
        case .abort:
            finished = .cancelled
            finishReason = packet.payload.map { $0.string } ?? "aborted"
        case .data:
            throw WireError.invalid("a sender does not receive data")
        }
    }

    /// Sends what credit (and the device's upload cap) allows, up to `budget` packets so other
    /// sessions get their turn.
    func pump(budget: Int = 64, cap: inout TokenBucket?) throws {
        blocked = false
        throttled = false
        var sent = 0
        while wantsToWrite && sent < budget {
            let length = summary.packetLength(chunk: chunk, index: packet)
            if cap != nil, !cap!.take(length) {
                throttled = true
                break
            }
            let offset = summary.chunkOffset(chunk) + UInt64(packet * Int(summary.packetSize))
            // Sealed: the relays in between see ciphertext only.
            let payload = try key.seal(try file.read(count: length, at: offset), chunk: UInt32(chunk), index: UInt16(packet))
            let header = PacketHeader(kind: .data, sessionId: open.sessionId, sequence: link.credit.nextSequence,
                                      chunk: UInt32(chunk), index: UInt16(packet))
            guard try socket.send(messages: LinkFrame.messages(header, payload: payload), dontWait: true) else {
                blocked = true
                return
            }
            _ = link.credit.take()
            link.counters.packetsForwarded += 1
            link.counters.payloadBytesForwarded += UInt64(length)
            sent += 1
            advance()
        }
        if sent > 0 { link.touch() }
    }

    private func advance() {
        packet += 1
        if packet < summary.packetCount(inChunk: chunk) { return }
        packet = 0
        chunk += 1
        if chunk < want[rangeIndex].end { return }
        rangeIndex += 1
        if rangeIndex < want.count { chunk = want[rangeIndex].start }
    }

    func close() { socket.close(lingerMilliseconds: 2000) }
}
