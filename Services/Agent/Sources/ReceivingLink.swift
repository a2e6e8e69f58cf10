import FerryContent
import FerryLink
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import ZeroMQ

/// Step (h)(iii): the first device's virtual link. It connects outward to the last relay, says
/// which chunks it still needs, grants credit as it consumes packets, and verifies each chunk
/// as its last packet arrives; a chunk that fails is never written, and is remembered so it
/// can be fetched elsewhere.
final class ReceivingLink {
    let open: SessionOpen
    let link: VirtualLink
    let socket: Socket
    /// Readable when the connection to the relay drops: the relay, or the host it ran on, is
    /// gone (a device's own relay dies with the device).
    let disconnections: Socket
    let partial: PartialContent
    /// Where the packets go for the sessions this device feeds while it downloads.
    let onward: OnwardPackets?
    /// Chunks this session is to deliver and that are not settled (verified or rejected) yet.
    var outstanding: Set<Int>
    var assembling: [Int: ChunkAssembly] = [:]
    var verifiedBytes: UInt64 = 0
    var rejectedChunks: [Int] = []
    /// Of those, the chunks rejected because a packet failed its tag.
    var unopenedChunks = 0
    var failed: String?
    /// Until the first data packet: when the sender is to have sent something by. A sender that
    /// stays silent past it is reported, so the broker finds another holder within seconds
    /// rather than after the link's idle timeout.
    var firstDataBy: ContinuousClock.Instant? = .now + .milliseconds(SenderSilent.patienceMilliseconds)

    struct ChunkAssembly {
        /// Each packet's bytes where they were opened: hashed and written from there, never
        /// gathered into one buffer.
        var plain: [Data]
        var received: [Bool]
        /// The packets as they came, kept only when they go on (`onward`).
        var sealed: [Data]
        var count = 0
    }

    let key: PacketKey

    init(open: SessionOpen, partial: PartialContent, onward: OnwardPackets? = nil, key: PacketKey, context: Context, idleTimeout: Duration,
         security: TransportSecurity = .off, relayKey: [UInt8]? = nil) throws {
        self.open = open
        self.key = key
        self.partial = partial
        self.onward = onward
        link = VirtualLink(sessionId: open.sessionId, requestId: open.requestId, address: open.address, role: .receiver,
                           window: open.window, idleTimeout: idleTimeout)
        // A stripe's session brings only its stripe: the request's other sessions bring the rest.
        let missing = partial.missing.filter(open.chunks.contains)
        outstanding = Set(missing)
        // With keys the relay knows this side by the device's key, so the routing id is its
        // own to choose; only plain TCP names the connection by its overlay address.
        socket = try Socket.linkDealer(context: context, address: security.isOn ? nil : open.address, window: open.window)
        disconnections = try socket.disconnections(in: context)
        try security.connect(socket, open.relayEndpoint, serverKey: relayKey)
        try socket.send(messages: LinkFrame.attach(open.sessionId, LinkAttach(role: .receiver, want: ChunkRange.runs(of: missing), token: open.token)), dontWait: true)
        let limit = link.credit.initialGrant()
        try socket.send(messages: LinkFrame.messages(PacketHeader(kind: .credit, sessionId: open.sessionId, sequence: limit)), dontWait: true)
    }

    /// The verified manifest's layout: the agent opens a link only when the session's matches it.
    var summary: ContentSummary { key.layout }
    var isSettled: Bool { outstanding.isEmpty }
    var tally: Downloads.LinkTally {
        Downloads.LinkTally(verifiedBytes: verifiedBytes, payloadBytes: link.counters.payloadBytesForwarded, rejectedChunks: rejectedChunks.count,
                            unopenedChunks: unopenedChunks, outstandingChunks: outstanding.count)
    }

    func handle(_ frames: [Message]) throws -> [Downloads.LinkEvent] {
        let packet = try LinkFrame(frames: frames[...])
        guard packet.header.sessionId == open.sessionId else { throw WireError.invalid("packet for another session") }
        link.touch()
        switch packet.header.kind {
        case .data:
            guard let payload = packet.payload else { throw WireError.malformed("data packet without payload") }
            firstDataBy = nil
            defer { grantCredit() }
            link.counters.packetsForwarded += 1
            link.counters.payloadBytesForwarded += UInt64(max(0, payload.count - ContentSummary.sealOverhead))
            return try place(payload, chunk: Int(packet.header.chunk), index: Int(packet.header.index))
        case .abort:
            let reason = packet.payload?.string ?? "aborted"
            failed = reason
            return [.aborted(reason)]
        case .attach, .credit, .done:
            return []
        }
    }

    private func place(_ payload: Message, chunk: Int, index: Int) throws -> [Downloads.LinkEvent] {
        guard outstanding.contains(chunk) else { return [] }  // a repeat of a settled chunk: consumed, ignored
        guard index < summary.packetCount(inChunk: chunk),
              payload.count == summary.packetLength(chunk: chunk, index: index) + ContentSummary.sealOverhead else {
            throw WireError.invalid("packet \(index) of chunk \(chunk) has \(payload.count) bytes")
        }
        let plain: Data, sealed: Data
        do {
            (plain, sealed) = try payload.withUnsafeBytes { try key.open($0, chunk: UInt32(chunk), index: UInt16(index)) }
        } catch {
            // Altered on the way, or sealed under another key: the chunk can't be trusted.
            onward?.reject(chunk)
            outstanding.remove(chunk)
            assembling[chunk] = nil
            rejectedChunks.append(chunk)
            unopenedChunks += 1
            return [.chunkRejected(chunk)]
        }
        // An honest sender sends chunks in order, so only the chunks one window spans are ever
        // partly here; more means a sender trying to make this device buffer the whole content.
        if assembling[chunk] == nil, assembling.count >= Int(link.credit.window) / summary.packetsPerFullChunk + 2 {
            throw WireError.invalid("the sender has more chunks open at once than its window allows")
        }
        let packets = summary.packetCount(inChunk: chunk)
        var assembly = assembling.removeValue(forKey: chunk)
            ?? ChunkAssembly(plain: Array(repeating: Data(), count: packets), received: Array(repeating: false, count: packets),
                             sealed: onward == nil ? [] : Array(repeating: Data(), count: packets))
        if !assembly.received[index] {
            assembly.received[index] = true
            assembly.count += 1
            assembly.plain[index] = plain
            if onward != nil { assembly.sealed[index] = sealed }
        }
        guard assembly.count == assembly.received.count else {
            assembling[chunk] = assembly
            onward?.arrived(sealed, chunk: chunk, index: index, packetsInChunk: assembly.received.count)
            return []
        }
        outstanding.remove(chunk)
        if try partial.store(chunk: chunk, pieces: assembly.plain) {
            onward?.verified(chunk, packets: assembly.sealed)
            verifiedBytes += UInt64(summary.chunkLength(chunk))
            return [.chunkVerified]
        }
        onward?.reject(chunk)
        rejectedChunks.append(chunk)
        return [.chunkRejected(chunk)]
    }

    private func grantCredit() {
        guard let limit = link.credit.consume() else { return }
        _ = try? socket.send(messages: LinkFrame.messages(PacketHeader(kind: .credit, sessionId: open.sessionId, sequence: limit)), dontWait: true)
    }

    /// Tells the sender (through the relays) that the data phase is over.
    func sendDone() {
        _ = try? socket.send(messages: LinkFrame.messages(PacketHeader(kind: .done, sessionId: open.sessionId)), dontWait: true)
    }

    func sendAbort(_ reason: String) {
        _ = try? socket.send(messages: LinkFrame.messages(PacketHeader(kind: .abort, sessionId: open.sessionId), payload: Data(reason.utf8)), dontWait: true)
    }

    /// Lingers so a final done or abort still reaches the relay.
    func close() {
        socket.close(lingerMilliseconds: 2000)
        disconnections.close()
    }
}
