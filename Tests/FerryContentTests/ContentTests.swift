import FerryContent
import FerryProtocol
import FerryTrust
import Foundation
import Testing

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func randomFile(_ directory: URL, bytes: Int) throws -> URL {
    var generator = SystemRandomNumberGenerator()
    let data = Data((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
    let url = directory.appendingPathComponent("input.bin")
    try data.write(to: url)
    return url
}

@Suite struct Manifests {
    @Test func buildAndVerify() throws {
        let dir = try temporaryDirectory()
        let file = try randomFile(dir, bytes: 300_000)
        let manifest = try ManifestCodec.build(fileAt: file, chunkSize: 65_536, packetSize: 16_384)
        #expect(manifest.chunkHashes.count == 5)
        #expect(manifest.size == 300_000)
        try ManifestCodec.verify(manifest)
        let decoded = try ManifestCodec.decode(try ManifestCodec.encode(manifest))
        #expect(decoded == manifest)
        // Same bytes, same id, whatever the name.
        #expect(try ManifestCodec.build(fileAt: file, name: "other", chunkSize: 65_536, packetSize: 16_384).contentId == manifest.contentId)
    }

    @Test func tamperedManifestIsRefused() throws {
        let dir = try temporaryDirectory()
        var manifest = try ManifestCodec.build(fileAt: try randomFile(dir, bytes: 200_000), chunkSize: 65_536, packetSize: 16_384)
        manifest.chunkHashes[1] = String(repeating: "0", count: 64)
        #expect(throws: ContentError.self) { try ManifestCodec.verify(manifest) }
        #expect(throws: (any Error).self) { try ManifestCodec.decode(Data("[]".utf8)) }
    }

    @Test func emptyContentIsRefused() throws {
        let dir = try temporaryDirectory()
        let empty = dir.appendingPathComponent("empty")
        try Data().write(to: empty)
        #expect(throws: ContentError.empty) { try ManifestCodec.build(fileAt: empty) }
    }
}

@Suite struct Store {
    @Test func onlyVerifiedChunksAreWrittenAndFinishIsAtomic() throws {
        let dir = try temporaryDirectory()
        let source = try randomFile(dir, bytes: 150_000)
        let bytes = try Data(contentsOf: source)
        let manifest = try ManifestCodec.build(fileAt: source, chunkSize: 65_536, packetSize: 16_384)
        let store = try ContentStore(root: dir.appendingPathComponent("store"))
        let partial = try store.beginDownload(manifest)
        #expect(partial.missing == [0, 1, 2])

        var wrong = bytes.subdata(in: 0..<65_536)
        wrong[10] ^= 0xff
        #expect(try partial.store(chunk: 0, pieces: [wrong]) == false)
        #expect(partial.missing == [0, 1, 2])
        #expect(throws: ContentError.self) { try partial.finish() }
        #expect(!store.holds(manifest.contentId))

        for chunk in 0..<3 {
            let range = Int(manifest.summary.chunkOffset(chunk))..<Int(manifest.summary.chunkOffset(chunk)) + manifest.summary.chunkLength(chunk)
            #expect(try partial.store(chunk: chunk, pieces: [bytes.subdata(in: range)]))
        }
        let final = try partial.finish()
        #expect(try Data(contentsOf: final) == bytes)
        #expect(store.holds(manifest.contentId))
        #expect(store.holdings() == [manifest.contentId])
        #expect(store.manifest(manifest.contentId) == manifest)
    }

    @Test func resumeKeepsVerifiedChunks() throws {
        let dir = try temporaryDirectory()
        let source = try randomFile(dir, bytes: 200_000)
        let bytes = try Data(contentsOf: source)
        let manifest = try ManifestCodec.build(fileAt: source, chunkSize: 65_536, packetSize: 16_384)
        let store = try ContentStore(root: dir.appendingPathComponent("store"))
        let first = try store.beginDownload(manifest)
        #expect(try first.store(chunk: 1, pieces: [bytes.subdata(in: 65_536..<131_072)]))
        first.saveProgress()
        let second = try store.beginDownload(manifest)
        #expect(second.missing == [0, 2, 3])
        #expect(second.verifiedBytes == 65_536)
    }

    @Test func atomicCopyReplacesWhole() throws {
        let dir = try temporaryDirectory()
        let source = try randomFile(dir, bytes: 1000)
        let target = dir.appendingPathComponent("out.bin")
        try Data("old".utf8).write(to: target)
        try atomicCopy(from: source, to: target)
        #expect(try Data(contentsOf: target) == Data(contentsOf: source))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".partial") }
        #expect(leftovers.isEmpty)
    }
}

@Suite struct ManifestSignatures {
    @Test func onlyTheOriginsKeyVerifies() throws {
        let dir = try temporaryDirectory()
        let manifest = try ManifestCodec.build(fileAt: try randomFile(dir, bytes: 100_000), chunkSize: 65_536, packetSize: 16_384)
        let key = try SigningKey.loadOrCreate(at: dir.appendingPathComponent("signing.key"))
        #expect(try SigningKey.loadOrCreate(at: dir.appendingPathComponent("signing.key")).publicKey == key.publicKey)
        let signed = try ManifestCodec.sign(manifest, with: key)
        try ManifestCodec.verifySignature(signed, publicKey: key.publicKey)
        // The signature survives the wire.
        try ManifestCodec.verifySignature(try ManifestCodec.decode(try ManifestCodec.encode(signed)), publicKey: key.publicKey)

        #expect(throws: ContentError.self) { try ManifestCodec.verifySignature(manifest, publicKey: key.publicKey) }  // unsigned
        #expect(throws: ContentError.self) { try ManifestCodec.verifySignature(signed, publicKey: SigningKey.random().publicKey) }
        var renamed = signed
        renamed.name = "other.bin"
        #expect(throws: ContentError.self) { try ManifestCodec.verifySignature(renamed, publicKey: key.publicKey) }
        #expect(throws: ContentError.self) { try ManifestCodec.verifySignature(signed, publicKey: "not a key") }
    }
}
