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
    /// Set while this device is still getting the content: only its verified chunks go.
    let growing: PartialContent?
    /// What goes next, what credit allows, and whether the session is over.
    var schedule: SendingSchedule
    /// The socket would not take the last packet: wait until it is writable.
    var blocked = false
    /// Stopped by the device's upload cap, not by credit or the socket.
    var throttled = false

    let key: PacketKey

    init(open: SessionOpen, file: FileBytes, growing: PartialContent? = nil, key: PacketKey, context: Context, idleTimeout: Duration,
         security: TransportSecurity = .off, relayKey: [UInt8]? = nil) throws {
        self.key = key
        self.growing = growing
        self.open = open
        self.file = file
        schedule = SendingSchedule(layout: key.layout, window: open.window)
        link = VirtualLink(sessionId: open.sessionId, requestId: open.requestId, address: open.address, role: .sender,
                           window: open.window, idleTimeout: idleTimeout)
        // With keys the relay knows this side by the device's key, so the routing id is its
        // own to choose; only plain TCP names the connection by its overlay address.
        socket = try Socket.linkDealer(context: context, address: security.isOn ? nil : open.address, window: open.window)
        try security.connect(socket, open.relayEndpoint, serverKey: relayKey)
        try socket.send(messages: LinkFrame.attach(open.sessionId, LinkAttach(role: .sender, want: [], token: open.token)), dontWait: true)
    }

    var wantsToWrite: Bool { nextPacket != nil }

    private var nextPacket: SendingSchedule.Next? {
        guard let growing else { return schedule.next }
        return schedule.next { growing.isVerified($0) }
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
            if cap != nil, !cap!.take(next.length) {
                throttled = true
                break
            }
            // Sealed: the relays in between see ciphertext only.
            let payload = try key.seal(try file.read(count: next.length, at: next.offset), chunk: UInt32(next.chunk), index: UInt16(next.index))
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

    func close() { socket.close(lingerMilliseconds: 2000) }
}
