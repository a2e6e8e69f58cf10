@testable import FerryAgent
import FerryContent
import FerryProtocol
import FerryService
import Foundation
import Testing

/// A range from the origin, streamed: each chunk is checked and written as its last byte
/// arrives, whatever sizes the pieces come in, and nothing wrong is written.
@Suite struct RangeChunksFromAStream {
    func fixture() throws -> (Manifest, Data, URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("range-chunks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var bytes = Data(count: 5 * 4096 + 100)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        let source = directory.appendingPathComponent("source")
        try bytes.write(to: source)
        return (try ManifestCodec.build(fileAt: source, chunkSize: 4096, packetSize: 1024), bytes, directory)
    }

    @Test func chunksAreStoredAsTheyCompleteWhateverThePieces() throws {
        let (manifest, bytes, directory) = try fixture()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = try FileBytes(writingAt: directory.appendingPathComponent("out").path)
        try file.truncate(to: manifest.size)
        var stored: [(Int, UInt64)] = []
        // Chunks 1 to 5 (the last one short), from the offset of chunk 1, in pieces of 1,000.
        let chunks = RangeChunks(manifest: manifest, chunks: 1..<6, file: file) { stored.append(($0, $1)) }
        let range = bytes[4096...]
        var offset = range.startIndex
        while offset < range.endIndex {
            let piece = range[offset..<min(offset + 1000, range.endIndex)]
            try Data(piece).withUnsafeBytes { try chunks.take($0) }
            offset += piece.count
            // A chunk is reported as soon as its last byte is in, not at the end of the range.
            #expect(stored.count == (offset - 4096) / 4096 || offset == range.endIndex)
        }
        #expect(chunks.complete && stored.map(\.0) == [1, 2, 3, 4, 5] && stored.last?.1 == 100)
        let written = try Data(contentsOf: directory.appendingPathComponent("out"))
        #expect(written[4096...] == bytes[4096...])
        #expect(throws: HTTPError.self) { try Data([1]).withUnsafeBytes { try chunks.take($0) } }
    }

    @Test func aChunkWithTheWrongHashIsNeverWritten() throws {
        let (manifest, bytes, directory) = try fixture()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = try FileBytes(writingAt: directory.appendingPathComponent("out").path)
        try file.truncate(to: manifest.size)
        var stored: [Int] = []
        let chunks = RangeChunks(manifest: manifest, chunks: 0..<2, file: file) { chunk, _ in stored.append(chunk) }
        var altered = bytes[0..<8192]
        altered[5000] ^= 0xFF
        #expect(throws: HTTPError.self) { try Data(altered).withUnsafeBytes { try chunks.take($0) } }
        #expect(stored == [0])
        let written = try Data(contentsOf: directory.appendingPathComponent("out"))
        #expect(written[4096..<8192].allSatisfy { $0 == 0 })
    }
}
