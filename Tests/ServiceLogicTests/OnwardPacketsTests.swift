import CZeroMQ
@testable import FerryAgent
import FerryContent
import FerryLink
import FerryProtocol
import FerryTrust
import Foundation
import Testing
import ZeroMQ

/// A chain member passes each packet on as it arrives, as it came, and never the whole of a
/// chunk it found bad.
@Suite struct OnwardPacketsDecisions {
    @Test func arrivingPacketsComeBackUntilTheirChunkSettles() {
        let onward = OnwardPackets(capacity: 4)
        onward.arrived(Data([1]), chunk: 3, index: 0, packetsInChunk: 2)
        onward.arrived(Data([7]), chunk: 3, index: 0, packetsInChunk: 2)
        onward.arrived(Data([9]), chunk: 3, index: 2, packetsInChunk: 2)
        #expect(onward.packet(chunk: 3, index: 0)?.sealed == Data([1]), "the first copy stays: it may have gone on")
        #expect(onward.packet(chunk: 3, index: 0)?.verified == false)
        #expect(onward.packet(chunk: 3, index: 1) == nil && onward.packet(chunk: 3, index: 2) == nil, "a packet the chunk has no room for is not kept")
        onward.verified(3, packets: [Data([2]), Data([3])])
        #expect(onward.packet(chunk: 3, index: 0)?.sealed == Data([2]) && onward.packet(chunk: 3, index: 1)?.verified == true,
                "the packets the chunk verified from replace what came first")
        onward.arrived(Data([5]), chunk: 3, index: 1, packetsInChunk: 2)
        #expect(onward.packet(chunk: 3, index: 1)?.sealed == Data([3]))
        onward.arrived(Data([4]), chunk: 4, index: 0, packetsInChunk: 2)
        onward.reject(4)
        #expect(onward.packet(chunk: 4, index: 0) == nil && onward.keptChunks == 1)
    }

    @Test func onlyTheNewestChunksAreKept() {
        let onward = OnwardPackets(capacity: 2)
        for chunk in [5, 6, 7] { onward.arrived(Data([UInt8(chunk)]), chunk: chunk, index: 0, packetsInChunk: 1) }
        #expect(onward.keptChunks == 2 && onward.packet(chunk: 5, index: 0) == nil && onward.packet(chunk: 7, index: 0)?.sealed == Data([7]))
        onward.verified(4, packets: [Data([4])])
        #expect(onward.packet(chunk: 4, index: 0) == nil, "older than every kept chunk: a session that far behind reads the file")
    }

    /// Three packets of chunk 0 go on before the chunk can be checked, byte for byte; its last
    /// packet opens (its sender has the key) but the chunk is not the manifest's, so nothing more
    /// of it goes on; once chunk 0 verifies another way, the rest follows, chunk 1 as it came.
    @Test func aChainMemberSendsEachPacketOnAsItCameAndNoBadChunkWhole() throws {
        let rig = try ChainMember()
        defer { rig.close() }
        #expect(!rig.downstream.wantsToWrite, "nothing received, nothing to send")
        for index in 0..<3 { #expect(try rig.arrive(0, index, try rig.sealed(0, index)).isEmpty) }
        let early = try rig.pump()
        #expect(early.map(\.place) == ["0.0", "0.1", "0.2"])
        #expect(try early.allSatisfy { try $0.payload == rig.sealed($0.chunk, $0.index) })
        #expect(!rig.downstream.wantsToWrite, "it waits at the packet it lacks")

        #expect(try rig.arrive(0, 3, try rig.lie(0, 3)) == [.chunkRejected(0)])
        #expect(rig.onward.packet(chunk: 0, index: 0) == nil && !rig.downstream.wantsToWrite)

        for index in 0..<4 { _ = try rig.arrive(1, index, try rig.sealed(1, index)) }
        #expect(rig.partial.isVerified(1) && (0..<4).allSatisfy { rig.onward.packet(chunk: 1, index: $0)?.verified == true })
        #expect(try rig.pump().isEmpty, "chunk 0 comes first, and it lacks it")

        try rig.verifyFromOrigin(0)
        let rest = try rig.pump()
        #expect(rest.map(\.place) == ["0.3", "1.0", "1.1", "1.2", "1.3"])
        #expect(try rest.allSatisfy { try $0.payload == rig.sealed($0.chunk, $0.index) })
        #expect(rest.allSatisfy { $0.kind == .data })
    }

    /// An upstream that holds the key seals packets of another chunk's bytes: they open, go on,
    /// and the chunk fails here. Once it verifies another way, the packets that went on are not
    /// the verified ones, so the session ends with an abort the receiver reads, rather than
    /// with a chunk that fails there and counts against this honest device.
    @Test func packetsPassedOnThatTheirChunkBeliesEndTheSession() throws {
        let rig = try ChainMember()
        defer { rig.close() }
        for index in 0..<3 { _ = try rig.arrive(0, index, try rig.lie(0, index)) }
        #expect(try rig.pump().map(\.place) == ["0.0", "0.1", "0.2"])
        #expect(try rig.arrive(0, 3, try rig.sealed(0, 3)) == [.chunkRejected(0)])
        try rig.verifyFromOrigin(0)
        #expect(throws: SendingLink.PassedOnUnverified.self) { try rig.downstream.pump(cap: &rig.cap) }
        let after = try rig.received()
        #expect(after.map(\.kind) == [.abort])
        #expect(after.first?.payload == Data(FinishReason.passedOnUnverified.rawValue.utf8))
    }
}

/// A device still getting two chunks' worth of content: a receiving link fed packets by hand,
/// and a sending link of the same device feeding the next one through a ROUTER that stands in
/// for its relay, on real sockets.
final class ChainMember {
    let dir: URL
    let bytes: Data
    let partial: PartialContent
    let key: PacketKey
    let context: Context
    let relay: Socket
    let onward = OnwardPackets(capacity: 4)
    let upstream: ReceivingLink
    let downstream: SendingLink
    var sequence: UInt32 = 0
    var cap: TokenBucket? = nil

    struct Sent {
        let kind: PacketHeader.Kind
        let chunk: Int, index: Int
        let payload: Data?
        var place: String { "\(chunk).\(index)" }
    }

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-onward-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        bytes = Data((0..<(2 * 65_536)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) })
        let source = dir.appendingPathComponent("source")
        try bytes.write(to: source)
        let manifest = try ManifestCodec.build(fileAt: source, chunkSize: 65_536, packetSize: 16_384)
        partial = try ContentStore(root: dir.appendingPathComponent("store")).beginDownload(manifest)
        key = ContentKey.random().packetKey(for: manifest.summary)
        context = try Context()
        relay = try context.socket(.router)
        let endpoint = "inproc://onward-\(UUID().uuidString)"
        try relay.bind(endpoint)
        func open(_ role: SessionRole, _ session: UInt64) throws -> SessionOpen {
            SessionOpen(sessionId: SessionID(session), requestId: try RequestID("r-\(session)"), traceId: "t", role: role, content: manifest.summary,
                        address: "100.96.0.\(session)", peerAddress: "100.96.0.9", peerDevice: try DeviceID("peer"), relayEndpoint: endpoint,
                        relays: [try RelayID("relay-1")], window: 32)
        }
        upstream = try ReceivingLink(open: try open(.receiver, 1), partial: partial, onward: onward, key: key, context: context, idleTimeout: .seconds(5))
        downstream = try SendingLink(open: try open(.sender, 2), file: try partial.openForReading(), growing: partial, onward: onward,
                                     key: key, context: context, idleTimeout: .seconds(5))
        try downstream.handle(LinkFrame.attach(SessionID(2), LinkAttach(role: .receiver, want: [ChunkRange(0, 2)])))
        try downstream.handle(LinkFrame.messages(PacketHeader(kind: .credit, sessionId: SessionID(2), sequence: 32)))
    }

    func plain(_ chunk: Int, _ index: Int) -> Data {
        let start = chunk * 65_536 + index * 16_384
        return bytes.subdata(in: start..<start + 16_384)
    }

    func sealed(_ chunk: Int, _ index: Int) throws -> Data { try key.seal(plain(chunk, index), chunk: UInt32(chunk), index: UInt16(index)) }

    /// Sealed under the right key and place, over the wrong bytes: only the chunk's hash tells.
    func lie(_ chunk: Int, _ index: Int) throws -> Data {
        var wrong = plain(chunk, index)
        wrong[0] ^= 0xff
        return try key.seal(wrong, chunk: UInt32(chunk), index: UInt16(index))
    }

    func arrive(_ chunk: Int, _ index: Int, _ payload: Data) throws -> [Downloads.LinkEvent] {
        defer { sequence += 1 }
        return try upstream.handle(LinkFrame.messages(PacketHeader(kind: .data, sessionId: SessionID(1), sequence: sequence, chunk: UInt32(chunk),
                                                                   index: UInt16(index)), payload: payload))
    }

    /// The chunk as the origin would deliver it.
    func verifyFromOrigin(_ chunk: Int) throws {
        let range = chunk * 65_536..<(chunk + 1) * 65_536
        guard try partial.store(chunk: chunk, pieces: [bytes.subdata(in: range)]) else {
            throw WireError.invalid("the origin's chunk did not verify")
        }
    }

    func pump() throws -> [Sent] {
        try downstream.pump(cap: &cap)
        return try received()
    }

    /// What the stand-in relay got from the sending link, besides its attach.
    func received() throws -> [Sent] {
        var packets: [Sent] = []
        var idle = 0
        while idle < 20 {
            guard let frames = try relay.receive(dontWait: true) else {
                idle += 1
                usleep(5_000)
                continue
            }
            let packet = try LinkFrame(frames: frames.dropFirst())
            guard packet.header.sessionId == SessionID(2), packet.header.kind != .attach else { continue }
            packets.append(Sent(kind: packet.header.kind, chunk: Int(packet.header.chunk), index: Int(packet.header.index), payload: packet.payload?.data))
        }
        return packets
    }

    func close() {
        upstream.close()
        downstream.close()
        relay.close(lingerMilliseconds: 0)
        try? FileManager.default.removeItem(at: dir)
    }
}
