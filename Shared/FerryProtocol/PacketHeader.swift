import Foundation

/// What travels on a virtual link. Bulk data must be cheap to parse, so links use a fixed
/// 32-byte big-endian header frame, followed by one payload frame for `data` and `attach`.
///
/// ```
///  0  magic "FP" (2)   2 version (1)   3 kind (1)
///  4  session id (8)
/// 12  sequence (4)     16 chunk (4)    20 packet index in chunk (2)   22 flags (2)
/// 24  payload length (4)               28 reserved, zero (4)
/// ```
public struct PacketHeader: Equatable, Sendable {
    public static let size = 32
    public static let magic: UInt16 = 0x4650  // "FP"
    public static let version: UInt8 = 1

    public enum Kind: UInt8, Sendable {
        /// Content bytes: `sequence` numbers packets from 0 in sending order.
        case data = 1
        /// A party joins the link; the payload is a JSON `LinkAttach`.
        case attach = 2
        /// The receiver may now be sent packets with `sequence < limit`; cumulative, so a
        /// repeated or reordered credit is harmless. The limit travels in `sequence`.
        case credit = 3
        /// The receiver has everything it wanted; the session's data phase is over.
        case done = 4
        /// A party gives up on the session; the payload is a UTF-8 reason.
        case abort = 5
    }

    public var kind: Kind
    public var sessionId: SessionID
    public var sequence: UInt32
    public var chunk: UInt32
    public var index: UInt16
    public var flags: UInt16
    public var length: UInt32

    public init(kind: Kind, sessionId: SessionID, sequence: UInt32 = 0, chunk: UInt32 = 0, index: UInt16 = 0,
                flags: UInt16 = 0, length: UInt32 = 0) {
        self.kind = kind
        self.sessionId = sessionId
        self.sequence = sequence
        self.chunk = chunk
        self.index = index
        self.flags = flags
        self.length = length
    }

    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.bigEndian) { raw in
                for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
            }
        }
        put(Self.magic, at: 0)
        bytes[2] = Self.version
        bytes[3] = kind.rawValue
        put(sessionId.value, at: 4)
        put(sequence, at: 12)
        put(chunk, at: 16)
        put(index, at: 20)
        put(flags, at: 22)
        put(length, at: 24)
        return bytes
    }

    public init(decoding raw: UnsafeRawBufferPointer) throws {
        guard raw.count == Self.size else { throw WireError.malformed("packet header is \(raw.count) bytes, expected \(Self.size)") }
        func get<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
            var value = T.zero
            withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[offset..<offset + MemoryLayout<T>.size])) }
            return T(bigEndian: value)
        }
        guard get(UInt16.self, at: 0) == Self.magic else { throw WireError.malformed("packet header has no FP magic") }
        guard raw[2] == Self.version else { throw WireError.unsupportedVersion("packet v\(raw[2])") }
        guard let kind = Kind(rawValue: raw[3]) else { throw WireError.unknownKind("packet kind \(raw[3])") }
        self.kind = kind
        sessionId = SessionID(get(UInt64.self, at: 4))
        sequence = get(UInt32.self, at: 12)
        chunk = get(UInt32.self, at: 16)
        index = get(UInt16.self, at: 20)
        flags = get(UInt16.self, at: 22)
        length = get(UInt32.self, at: 24)
    }

    public init(decoding data: Data) throws {
        self = try data.withUnsafeBytes { try PacketHeader(decoding: $0) }
    }
}

/// The payload of an `attach` packet.
public struct LinkAttach: Codable, Sendable, Equatable {
    public var role: SessionRole
    /// For the receiver: the chunks it still needs (it may already hold some from an earlier try).
    public var want: [ChunkRange]
    /// The broker's token for this party; the relay checks it and strips it before passing the
    /// attach on, so the other party never sees it.
    public var token: SessionToken?
    public init(role: SessionRole, want: [ChunkRange], token: SessionToken? = nil) {
        self.role = role
        self.want = want
        self.token = token
    }
}
