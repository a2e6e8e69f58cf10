import Foundation

/// What a device needs to verify content: its size, fixed chunk and packet sizes, and the
/// SHA-256 of every chunk. The content id is the root hash over all of it (see `FerryContent`),
/// so a manifest cannot be altered without changing the id it claims.
public struct Manifest: Codable, Sendable, Equatable {
    public var contentId: ContentID
    public var name: String
    public var size: UInt64
    public var chunkSize: UInt32
    public var packetSize: UInt32
    /// Lowercase hex SHA-256 of each chunk, in order.
    public var chunkHashes: [String]
    public var createdAt: String
    /// The origin's Ed25519 signature (base64) over the content id, name and creation time; the
    /// content id commits to everything else. See `ManifestCodec.verifySignature`.
    public var signature: String?

    public init(contentId: ContentID, name: String, size: UInt64, chunkSize: UInt32, packetSize: UInt32,
                chunkHashes: [String], createdAt: String) {
        self.contentId = contentId
        self.name = name
        self.size = size
        self.chunkSize = chunkSize
        self.packetSize = packetSize
        self.chunkHashes = chunkHashes
        self.createdAt = createdAt
    }

    public var summary: ContentSummary {
        ContentSummary(contentId: contentId, size: size, chunkSize: chunkSize, packetSize: packetSize)
    }

    /// Shape rules; the root hash itself is checked by `ManifestCodec.verify` in FerryContent.
    public func validate() throws {
        try summary.validate()
        guard chunkHashes.count == summary.chunkCount else {
            throw WireError.invalid("manifest lists \(chunkHashes.count) chunk hashes for \(summary.chunkCount) chunks")
        }
        guard chunkHashes.allSatisfy({ $0.utf8.count == 64 }) else { throw WireError.invalid("chunk hashes must be 64 hex digits") }
        guard name.utf8.count <= 255, !name.contains("/") else { throw WireError.invalid("manifest name must be a plain file name") }
    }
}

/// The part of a manifest that routing and accounting need, carried in requests and sessions.
public struct ContentSummary: Codable, Sendable, Equatable, Hashable {
    public static let maxPacketSize: UInt32 = 1 << 20
    /// What sealing adds to each packet between devices (ChaChaPoly's tag).
    public static let sealOverhead = 16
    public static let minPacketSize: UInt32 = 512
    public static let maxChunkSize: UInt32 = 64 << 20

    public var contentId: ContentID
    public var size: UInt64
    public var chunkSize: UInt32
    public var packetSize: UInt32

    public init(contentId: ContentID, size: UInt64, chunkSize: UInt32, packetSize: UInt32) {
        self.contentId = contentId
        self.size = size
        self.chunkSize = chunkSize
        self.packetSize = packetSize
    }

    public func validate() throws {
        guard size > 0 else { throw WireError.invalid("content size must be positive") }
        guard packetSize >= Self.minPacketSize, packetSize <= Self.maxPacketSize else {
            throw WireError.invalid("packet size must be \(Self.minPacketSize)...\(Self.maxPacketSize) bytes")
        }
        guard chunkSize >= packetSize, chunkSize <= Self.maxChunkSize, chunkSize % packetSize == 0 else {
            throw WireError.invalid("chunk size must be a multiple of the packet size, at most \(Self.maxChunkSize)")
        }
        // A packet's index within its chunk travels in 16 bits.
        guard chunkSize / packetSize <= UInt32(UInt16.max) else {
            throw WireError.invalid("a chunk may hold at most \(UInt16.max) packets")
        }
        guard chunkCount <= Int(UInt32.max) else { throw WireError.invalid("too many chunks") }
    }

    /// Rounded up without `size + chunkSize - 1`, which overflows for a size near 2^64 (found by
    /// `Scripts/fuzz`); callers that take a size from the wire `validate()` first, which refuses
    /// more than 2^32 - 1 chunks.
    public var chunkCount: Int {
        let whole = size / UInt64(chunkSize)
        return Int(clamping: whole + (size % UInt64(chunkSize) == 0 ? 0 : 1))
    }
    public var packetsPerFullChunk: Int { Int(chunkSize / packetSize) }

    public func chunkOffset(_ chunk: Int) -> UInt64 { UInt64(chunk) * UInt64(chunkSize) }

    public func chunkLength(_ chunk: Int) -> Int {
        Int(min(UInt64(chunkSize), size - chunkOffset(chunk)))
    }

    public func packetCount(inChunk chunk: Int) -> Int {
        (chunkLength(chunk) + Int(packetSize) - 1) / Int(packetSize)
    }

    public func packetLength(chunk: Int, index: Int) -> Int {
        min(Int(packetSize), chunkLength(chunk) - index * Int(packetSize))
    }

    /// Where packet `index` of `chunk` starts in the content.
    public func packetOffset(chunk: Int, index: Int) -> UInt64 { chunkOffset(chunk) + UInt64(index) * UInt64(packetSize) }
}

/// A half-open run of chunk numbers, `[start, end)`.
public struct ChunkRange: Codable, Sendable, Equatable, Hashable {
    public var start: Int
    public var end: Int

    public init(_ start: Int, _ end: Int) {
        self.start = start
        self.end = end
    }

    public var count: Int { end - start }

    /// Compresses sorted chunk numbers into runs, so a want-list stays small.
    public static func runs(of chunks: some Sequence<Int>) -> [ChunkRange] {
        var ranges: [ChunkRange] = []
        for chunk in chunks {
            if let last = ranges.last, last.end == chunk { ranges[ranges.count - 1].end += 1 }
            else { ranges.append(ChunkRange(chunk, chunk + 1)) }
        }
        return ranges
    }
}

/// Stripe `index` of `count`: a contiguous share of a content's chunks. A request that several
/// devices serve at once has one session per stripe, each bringing only its stripe's chunks,
/// so no chunk comes twice and a stripe that loses its sender gets a new path alone.
public struct Stripe: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    public static let maxCount = 16

    public var index: Int
    public var count: Int

    public init(_ index: Int, of count: Int) {
        self.index = index
        self.count = count
    }

    /// Its chunks in a content of `chunkCount`: as even as whole chunks allow.
    public func chunks(of chunkCount: Int) -> Range<Int> {
        chunkCount * index / count ..< chunkCount * (index + 1) / count
    }

    public func validate(chunkCount: Int) throws {
        guard (2...Self.maxCount).contains(count) else { throw WireError.invalid("a stripe's count must be 2...\(Self.maxCount)") }
        guard (0..<count).contains(index) else { throw WireError.invalid("stripe \(index) is not one of \(count)") }
        guard count <= chunkCount else { throw WireError.invalid("\(count) stripes of \(chunkCount) chunks") }
    }

    public var description: String { "\(index + 1)/\(count)" }
}
