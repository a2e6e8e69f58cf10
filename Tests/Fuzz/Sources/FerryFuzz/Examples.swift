import FerryContent
import FerryProtocol
import FerryTrust
import Foundation

/// One valid value of everything a decoder reads, for seeds: libFuzzer gets further from a
/// message that decodes than from noise.
enum Example {
    static let content = try! ContentID(String(repeating: "ab", count: 32))
    static let summary = ContentSummary(contentId: content, size: 10 * 262_144 + 5, chunkSize: 262_144, packetSize: 65_536)
    static let device = try! DeviceID("dev-a")
    static let peer = try! DeviceID("dev-b")
    static let relay = try! RelayID("relay-1")
    static let session = SessionID(0x0123_4567_89ab_cdef)
    static let request = DownloadRequest(requestId: try! RequestID("req-1"), deviceId: device, content: summary,
                                         server: "http://127.0.0.1:7080", requestedAt: "2026-11-24T10:00:00.000000Z")
    static let match = MatchRequest(request: request, traceId: "trace-1", attempt: 2)
    static let sources = [SourceBytes(kind: .peer, device: peer, sessionId: session, bytes: 100),
                          SourceBytes(kind: .origin, bytes: summary.size - 100)]
    static var counters: LinkCounters {
        var counters = LinkCounters()
        counters.packetsForwarded = 7
        counters.payloadBytesForwarded = 458_752
        counters.peakQueued = 3
        return counters
    }

    static let fulfilment = Fulfilment(requestId: request.requestId, deviceId: device, contentId: content, size: summary.size,
                                       bytesFromPeers: 100, bytesFromOrigin: summary.size - 100, sources: sources,
                                       verification: .matched, recordedAt: "2026-11-24T10:00:01.000000Z")

    static let event = FerryEvent(topic: EventTopic.matchFound.rawValue, time: "2026-11-24T10:00:00.000000Z", publisher: "matcher",
                                  seq: 4, requestId: "req-1", sessionId: session.hex,
                                  data: ["source": "dev-b", "n": 3, "ratio": 0.5, "ok": true, "list": .array(["a", .null]),
                                         "nested": .object(["x": 1])])

    /// The key every signature in the seeds is made with, and the targets check against. Fixed,
    /// so that what one process signs verifies in the next; SigningKey loads a fixed key only
    /// from a file.
    static let key: SigningKey = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-fuzz-key-\(getpid())")
        defer { try? FileManager.default.removeItem(at: url) }
        try! Data(Data(repeating: 7, count: 32).base64EncodedString().utf8).write(to: url)
        return try! SigningKey.loadOrCreate(at: url)
    }()
    static let verifyingKey = try! VerifyingKey(base64: key.publicKey)

    /// Token checks happen at this time: the grant expires a minute later.
    static let now: Int64 = 1_795_000_000_000
    static let grant = SessionGrant(sessionId: session, relayId: relay, address: "100.96.0.1", role: .receiver, expiresAt: now + 60_000)
    static let token = try! SessionTokens.issue(grant, with: key)
    static let attach = LinkAttach(role: .receiver, want: [ChunkRange(0, 3), ChunkRange(5, 7)], token: token)

    /// A manifest whose root hash is right; its chunk digests are made up, which only a
    /// download would notice.
    static let manifest: Manifest = {
        let size: UInt64 = 2_000, chunkSize: UInt32 = 1_024, packetSize: UInt32 = 512
        let digests = [[UInt8](repeating: 1, count: 32), [UInt8](repeating: 2, count: 32)]
        return Manifest(contentId: ManifestCodec.rootHash(size: size, chunkSize: chunkSize, packetSize: packetSize, chunkDigests: digests),
                        name: "seed.bin", size: size, chunkSize: chunkSize, packetSize: packetSize,
                        chunkHashes: digests.map(Hex.encode), createdAt: "2026-11-24T10:00:00.000000Z")
    }()

    /// Inputs that once broke decoders elsewhere, or nearly did: each is tried as every body.
    static func committedCorpus() throws -> [Data] {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../FerryProtocolTests/Corpus").standardized
        return try FileManager.default.contentsOfDirectory(at: corpus, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
            .map { try Data(contentsOf: $0) }
    }
}
