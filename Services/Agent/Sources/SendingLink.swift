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
    /// Set while this device is still getting the content: only its verified chunks go, and
    /// the packets it has received of the chunks after them.
    let growing: PartialContent?
    let onward: OnwardPackets?
    /// Whether packets went on before their chunk verified here, and which.
    var passing = Passing.checked
    /// What goes next, what credit allows, and whether the session is over.
    var schedule: SendingSchedule
    /// The socket would not take the last packet: wait until it is writable.
    var blocked = false
    /// Stopped by the device's upload cap, not by credit or the socket.
    var throttled = false

    let key: PacketKey

    enum Passing {
        /// Everything sent so far belongs to chunks that verified here.
        case checked
        /// Packets of `chunk` sent as they came, by index, to be compared with the verified
        /// chunk once it is.
        case unchecked(chunk: Int, packets: [Int: Data])
    }

    /// `endpoint`: where to attach, when not the session's relay endpoint (this device's own
    /// relay's local one, with `security` off).
    init(open: SessionOpen, file: FileBytes, growing: PartialContent? = nil, onward: OnwardPackets? = nil, key: PacketKey, context: Context, idleTimeout: Duration,
         security: TransportSecurity = .off, relayKey: [UInt8]? = nil, endpoint: String? = nil) throws {
        self.key = key
        self.growing = growing
        self.onward = onward
        self.open = open
        self.file = file
        schedule = SendingSchedule(layout: key.layout, window: open.window)
        link = VirtualLink(sessionId: open.sessionId, requestId: open.requestId, address: open.address, role: .sender,
                           window: open.window, idleTimeout: idleTimeout)
        // With keys the relay knows this side by the device's key, so the routing id is its
        // own to choose; only plain TCP names the connection by its overlay address.
        socket = try Socket.linkDealer(context: context, address: security.isOn ? nil : open.address, window: open.window)
        try security.connect(socket, endpoint ?? open.relayEndpoint, serverKey: relayKey)
        try socket.send(messages: LinkFrame.attach(open.sessionId, LinkAttach(role: .sender, want: [], token: open.token)), dontWait: true)
    }

    var wantsToWrite: Bool { nextPacket != nil }

    private var nextPacket: SendingSchedule.Next? {
        guard let growing else { return schedule.next }
        return schedule.next { chunk, index in growing.isVerified(chunk) || onward?.packet(chunk: chunk, index: index) != nil }
    }

    func handle(_ frames: [Message]) throws {
        let packet = try LinkFrame(frames: frames[...])
        guard packet.header.sessionId == open.sessionId else { throw WireError.invalid("packet for another session") }
        link.touch()
        switch packet.header.kind {
        case .attach:
            let attach = try packet.decodeAttach()
            try schedule.attached(role: attach.role, want: attach.want)
        case .credit:
            schedule.granted(upTo: packet.header.sequence)
        case .done:
            schedule.ended(abort: nil)
        case .abort:
            schedule.ended(abort: packet.payload.map { $0.string } ?? "aborted")
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
        while sent < budget, let next = nextPacket {
            try checkPassedOn()
            if cap != nil, !cap!.take(next.length) {
                throttled = true
                break
            }
            // Sealed: the relays in between see ciphertext only. A packet received from a peer
            // goes on as it came; one of a chunk not verified here yet is remembered.
            let kept = onward?.packet(chunk: next.chunk, index: next.index)
            let payload: Data
            if let kept, kept.verified || growing?.isVerified(next.chunk) == false {
                payload = kept.sealed
                if !kept.verified { remember(kept.sealed, next) }
            } else {
                payload = try sealed(next.chunk, next.index)
            }
            let header = PacketHeader(kind: .data, sessionId: open.sessionId, sequence: next.sequence, chunk: UInt32(next.chunk), index: UInt16(next.index))
            guard try socket.send(messages: LinkFrame.messages(header, payload: payload), dontWait: true) else {
                blocked = true
                return
            }
            schedule.sent()
            link.counters.packetsForwarded += 1
            link.counters.payloadBytesForwarded += UInt64(next.length)
            sent += 1
        }
        if sent > 0 { link.touch() }
    }

    private func sealed(_ chunk: Int, _ index: Int) throws -> Data {
        let bytes = try file.read(count: key.layout.packetLength(chunk: chunk, index: index), at: key.layout.packetOffset(chunk: chunk, index: index))
        return try key.seal(bytes, chunk: UInt32(chunk), index: UInt16(index))
    }

    private func remember(_ packet: Data, _ next: SendingSchedule.Next) {
        var packets: [Int: Data] = [:]
        if case .unchecked(next.chunk, let earlier) = passing { packets = earlier }
        packets[next.index] = packet
        passing = .unchecked(chunk: next.chunk, packets: packets)
    }

    /// Once a chunk whose packets went on unverified has verified here, they are compared with
    /// the verified ones; a difference ends the session (`passedOnUnverified`).
    private func checkPassedOn() throws {
        guard case .unchecked(let chunk, let packets) = passing, growing?.isVerified(chunk) != false else { return }
        for (index, packet) in packets {
            let kept = onward?.packet(chunk: chunk, index: index).flatMap { $0.verified ? $0.sealed : nil }
            let truth = try kept ?? sealed(chunk, index)
            guard truth == packet else {
                sendAbort(FinishReason.passedOnUnverified.rawValue)
                throw PassedOnUnverified(chunk: chunk)
            }
        }
        passing = .checked
    }

    struct PassedOnUnverified: Error, CustomStringConvertible {
        let chunk: Int
        var description: String { "\(FinishReason.passedOnUnverified.rawValue): chunk \(chunk)" }
    }

    func sendAbort(_ reason: String) {
        _ = try? socket.send(messages: LinkFrame.messages(PacketHeader(kind: .abort, sessionId: open.sessionId), payload: Data(reason.utf8)), dontWait: true)
    }

    func close() { socket.close(lingerMilliseconds: 2000) }
}
