import Crypto
import FerryProtocol
import FerryTrust
import Foundation

/// Builds manifests and checks that a manifest's content id really is its root hash.
///
/// root = SHA-256("ferry-manifest-v1" || size u64 || chunkSize u32 || packetSize u32 || chunk digests)
/// with integers big-endian and the raw 32-byte chunk digests in order. The name is not part of
/// it: the same bytes are the same content whatever they are called.
public enum ManifestCodec {
    public static let defaultChunkSize: UInt32 = 256 << 10
    public static let defaultPacketSize: UInt32 = 64 << 10

    public static func rootHash(size: UInt64, chunkSize: UInt32, packetSize: UInt32, chunkDigests: [[UInt8]]) -> ContentID {
        var hasher = SHA256()
        hasher.update(data: Array("ferry-manifest-v1".utf8))
        withUnsafeBytes(of: size.bigEndian) { hasher.update(bufferPointer: $0) }
        withUnsafeBytes(of: chunkSize.bigEndian) { hasher.update(bufferPointer: $0) }
        withUnsafeBytes(of: packetSize.bigEndian) { hasher.update(bufferPointer: $0) }
        for digest in chunkDigests { hasher.update(data: digest) }
        return try! ContentID(Hex.encode(Array(hasher.finalize())))
    }

    /// Reads a file once, chunk by chunk (memory stays at one chunk), and describes it.
    public static func build(fileAt url: URL, name: String? = nil, chunkSize: UInt32 = defaultChunkSize,
                             packetSize: UInt32 = defaultPacketSize) throws -> Manifest {
        let file = try FileBytes(readingAt: url.path)
        defer { file.close() }
        let size = try file.size()
        guard size > 0 else { throw ContentError.empty }
        var digests: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: Int(chunkSize))
        var offset: UInt64 = 0
        while offset < size {
            let length = Int(min(UInt64(chunkSize), size - offset))
            try buffer.withUnsafeMutableBytes { try file.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<length]), at: offset) }
            digests.append(buffer.withUnsafeBytes { Array(SHA256.hash(data: UnsafeRawBufferPointer(rebasing: $0[0..<length]))) })
            offset += UInt64(length)
        }
        let manifest = Manifest(
            contentId: rootHash(size: size, chunkSize: chunkSize, packetSize: packetSize, chunkDigests: digests),
            name: name ?? url.lastPathComponent, size: size, chunkSize: chunkSize, packetSize: packetSize,
            chunkHashes: digests.map(Hex.encode), createdAt: Timestamp.now())
        try manifest.validate()
        return manifest
    }

    /// Shape and root hash: a manifest that passes can be trusted for every chunk hash in it.
    public static func verify(_ manifest: Manifest) throws {
        try manifest.validate()
        let digests = try manifest.chunkHashes.map { hex -> [UInt8] in
            guard let bytes = Hex.decode(hex), bytes.count == 32 else { throw WireError.invalid("chunk hash is not hex") }
            return bytes
        }
        let root = rootHash(size: manifest.size, chunkSize: manifest.chunkSize, packetSize: manifest.packetSize, chunkDigests: digests)
        guard root == manifest.contentId else {
            throw ContentError.rootMismatch(claimed: manifest.contentId, computed: root)
        }
    }

    public static func decode(_ data: Data) throws -> Manifest {
        let manifest: Manifest
        do {
            manifest = try JSONCoding.decoder.decode(Manifest.self, from: data)
        } catch let error as WireError {
            throw error
        } catch {
            throw WireError.malformed("manifest: \(error)")
        }
        try verify(manifest)
        return manifest
    }

    public static func encode(_ manifest: Manifest) throws -> Data { try JSONCoding.encoder.encode(manifest) }

    /// What the origin signs: the root hash commits to size, chunk and packet sizes and every
    /// chunk hash, so signing it (with the name and time) covers the whole manifest.
    static func signedBytes(_ manifest: Manifest) -> Data {
        Data("ferry-manifest-signature-v1\n\(manifest.contentId.hex)\n\(manifest.name)\n\(manifest.createdAt)".utf8)
    }

    public static func sign(_ manifest: Manifest, with key: SigningKey) throws -> Manifest {
        var signed = manifest
        signed.signature = try key.signature(for: signedBytes(manifest)).base64EncodedString()
        return signed
    }

    /// Throws unless the manifest carries a valid signature by `publicKey` (raw, base64).
    public static func verifySignature(_ manifest: Manifest, publicKey: String) throws {
        guard let key = try? VerifyingKey(base64: publicKey) else {
            throw ContentError.io("the origin public key is not a base64 Ed25519 key")
        }
        guard let signature = manifest.signature.flatMap({ Data(base64Encoded: $0) }),
              key.isValid(signature, for: signedBytes(manifest)) else {
            throw ContentError.badSignature(manifest.contentId)
        }
    }

    /// True when `bytes` is exactly chunk `chunk` of the manifest's content.
    public static func chunkMatches(_ bytes: UnsafeRawBufferPointer, chunk: Int, of manifest: Manifest) -> Bool {
        chunkMatches(CollectionOfOne(bytes), chunk: chunk, of: manifest)
    }

    /// True when `pieces`, one after the other, are exactly chunk `chunk`: a chunk's packets
    /// are hashed where they arrived, never gathered into one buffer.
    public static func chunkMatches<Pieces: Collection>(_ pieces: Pieces, chunk: Int, of manifest: Manifest) -> Bool
    where Pieces.Element: DataProtocol {
        guard chunk >= 0, chunk < manifest.chunkHashes.count,
              pieces.reduce(0, { $0 + $1.count }) == manifest.summary.chunkLength(chunk) else { return false }
        var hasher = SHA256()
        for piece in pieces { hasher.update(data: piece) }
        return Hex.encode(Array(hasher.finalize())) == manifest.chunkHashes[chunk]
    }
}

public enum ContentError: Error, CustomStringConvertible, Equatable {
    case empty
    case rootMismatch(claimed: ContentID, computed: ContentID)
    case io(String)
    case notHeld(ContentID)
    case badSignature(ContentID)

    public var description: String {
        switch self {
        case .empty: "content is empty"
        case .rootMismatch(let claimed, let computed): "manifest claims content id \(claimed.short)… but its root hash is \(computed.short)…"
        case .io(let detail): detail
        case .notHeld(let id): "content \(id.short)… is not held here"
        case .badSignature(let id): "manifest-signature: the manifest of \(id.short)… is not signed by the configured origin key"
        }
    }
}
