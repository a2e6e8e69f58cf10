import Foundation

/// The sealed packets a device still getting the content has received from a peer, kept for
/// the sessions it feeds in turn. A member of a chain sends each packet on as it arrives, as
/// it came: the seal depends only on the content, the layout and the packet's place
/// (`PacketKey`), so an honest packet is the very ciphertext this device would make, and every
/// device behind it checks each chunk on its own. Waiting for whole chunks instead costs every
/// hop a chunk's transmission time, and re-reading and re-sealing costs every forwarded byte a
/// read and a ChaCha20-Poly1305 pass.
///
/// A packet that opened may still belong to a chunk that fails its hash (its sender holds the
/// key and lied), so a chunk's last packet is kept only once the chunk verified here, and a
/// session that passed on packets of a chunk before it verified compares them with the
/// verified ones (`SendingLink`): no device behind an honest one completes a chunk this device
/// found bad. Only the newest `capacity` chunks are kept; a session further behind sends
/// verified chunks from the file, sealing them again.
final class OnwardPackets {
    enum Chunk {
        /// Packets as they first came, by index; the chunk is not settled here yet.
        case arriving([Data?])
        /// The packets the chunk verified from, every one.
        case verified([Data])
    }

    /// Four chunks: a session a packet or two behind its upstream, the usual case, sends from
    /// here. Keeping a window's worth (eight and more) measured worse than re-sealing: at 16
    /// devices 13.5 CPU seconds a GiB instead of 12.7, the retained buffers costing more in
    /// cache misses and fresh pages than the reads and seals they saved.
    static let chunksKept = 4

    let capacity: Int
    private var chunks: [Int: Chunk] = [:]

    init(capacity: Int = OnwardPackets.chunksKept) {
        self.capacity = max(1, capacity)
    }

    var keptChunks: Int { chunks.count }

    /// A packet that opened under the content's key, of a chunk not yet settled here. The first
    /// copy stays: it may already have gone on.
    func arrived(_ sealed: Data, chunk: Int, index: Int, packetsInChunk: Int) {
        guard index >= 0, index < packetsInChunk else { return }
        switch chunks[chunk] {
        case .verified: return
        case .arriving(var packets):
            guard packets.count == packetsInChunk, packets[index] == nil else { return }
            packets[index] = sealed
            chunks[chunk] = .arriving(packets)
        case nil:
            guard makeRoom(for: chunk) else { return }
            var packets = [Data?](repeating: nil, count: packetsInChunk)
            packets[index] = sealed
            chunks[chunk] = .arriving(packets)
        }
    }

    /// The chunk verified here from `packets`.
    func verified(_ chunk: Int, packets: [Data]) {
        if chunks[chunk] == nil, !makeRoom(for: chunk) { return }
        chunks[chunk] = .verified(packets)
    }

    /// A chunk that failed here, its hash or a packet's tag: none of it goes on from here.
    func reject(_ chunk: Int) {
        chunks[chunk] = nil
    }

    /// The packet, and whether its chunk verified here.
    func packet(chunk: Int, index: Int) -> (sealed: Data, verified: Bool)? {
        switch chunks[chunk] {
        case .verified(let packets): packets.indices.contains(index) ? (packets[index], true) : nil
        case .arriving(let packets): packets.indices.contains(index) ? packets[index].map { ($0, false) } : nil
        case nil: nil
        }
    }

    /// Drops the oldest chunk when full; a chunk older than all kept is not taken.
    private func makeRoom(for chunk: Int) -> Bool {
        guard chunks.count >= capacity, let oldest = chunks.keys.min() else { return true }
        guard oldest < chunk else { return false }
        chunks[oldest] = nil
        return true
    }
}
