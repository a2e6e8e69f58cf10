import FerryProtocol
import Foundation
import ZeroMQ

/// The frames of one link packet, `[header, payload?]`, checked on arrival: a header that
/// doesn't parse, a payload whose length disagrees with the header, or one larger than any
/// packet may be, is refused with a reason the caller counts.
public struct LinkFrame {
    public let header: PacketHeader
    public let payload: Message?

    public init(header: PacketHeader, payload: Message?) {
        self.header = header
        self.payload = payload
    }

    /// `frames` excludes any routing id.
    public init(frames: ArraySlice<Message>) throws {
        guard frames.count == 1 || frames.count == 2 else {
            throw WireError.malformed("a link packet is [header] or [header, payload], got \(frames.count) frames")
        }
        let first = frames[frames.startIndex]
        header = try first.withUnsafeBytes { try PacketHeader(decoding: $0) }
        payload = frames.count == 2 ? frames[frames.startIndex + 1] : nil
        let payloadCount = payload?.count ?? 0
        guard payloadCount <= Int(ContentSummary.maxPacketSize) + ContentSummary.sealOverhead else {
            throw WireError.tooLarge(payloadCount, limit: Int(ContentSummary.maxPacketSize) + ContentSummary.sealOverhead)
        }
        guard UInt32(payloadCount) == header.length else {
            throw WireError.malformed("header says \(header.length) payload bytes, frame has \(payloadCount)")
        }
        switch header.kind {
        case .data, .attach, .abort: break
        case .credit, .done:
            guard payloadCount == 0 else { throw WireError.malformed("\(header.kind) packets carry no payload") }
        }
    }

    public static func messages(_ header: PacketHeader, payload: Data? = nil) -> [Message] {
        var header = header
        header.length = UInt32(payload?.count ?? 0)
        var messages = [Message(header.encoded)]
        if let payload { messages.append(Message(payload)) }
        return messages
    }

    public static func attach(_ sessionId: SessionID, _ attach: LinkAttach) -> [Message] {
        messages(PacketHeader(kind: .attach, sessionId: sessionId), payload: try! JSONCoding.encoder.encode(attach))
    }

    public func decodeAttach() throws -> LinkAttach {
        guard header.kind == .attach, let payload else { throw WireError.malformed("not an attach packet") }
        do {
            return try JSONCoding.decoder.decode(LinkAttach.self, from: payload.data)
        } catch {
            throw WireError.malformed("attach payload: \(error)")
        }
    }
}

extension Socket {
    /// A DEALER for one virtual link. Without transport keys its routing id is the link's
    /// overlay address (`address`), which the relay checks against the party's token; with
    /// keys it is nil, and the relay binds the connection to the session when the device whose
    /// key it is attaches with its token, so nobody can take a party's place by choosing its
    /// routing id first. High-water marks sit above
    /// any window, so credit, not libzmq, is what stops a sender. The caller connects it (with
    /// the relay's key when transport security is on).
    public static func linkDealer(context: Context, address: String?, window: Int) throws -> Socket {
        let socket = try context.socket(.dealer)
        if let address { try socket.setIdentity(address) }
        try socket.setSendHighWaterMark(Int32(window * 2 + 64))
        try socket.setReceiveHighWaterMark(Int32(window * 2 + 64))
        try socket.setMaxMessageSize(Int64(ContentSummary.maxPacketSize) + 4096)
        return socket
    }
}
