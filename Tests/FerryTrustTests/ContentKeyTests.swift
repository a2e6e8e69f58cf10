import Crypto
import FerryProtocol
import FerryTrust
import Foundation
import Testing

@Suite struct ContentSealing {
    let content = try! ContentID(String(repeating: "ab", count: 32))
    let other = try! ContentID(String(repeating: "cd", count: 32))
    let packet = Data((0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 7) })

    var layout: ContentSummary { ContentSummary(contentId: content, size: 16 << 20, chunkSize: 1 << 20, packetSize: 65_536) }

    @Test func aPacketOpensOnlyWhereItWasSealed() throws {
        let contentKey = ContentKey.random()
        let key = contentKey.packetKey(for: layout)
        let sealed = try key.seal(packet, chunk: 3, index: 2)
        #expect(sealed.count == packet.count + ContentKey.overhead)
        #expect(sealed.range(of: packet.prefix(64)) == nil)
        #expect(try key.open(sealed, chunk: 3, index: 2) == packet)
        // The same bytes sealed again are the same ciphertext, so one copy serves every recipient.
        #expect(try key.seal(packet, chunk: 3, index: 2) == sealed)
        #expect(try contentKey.packetKey(for: layout).open(sealed, chunk: 3, index: 2) == packet)
        for (chunk, index) in [(UInt32(3), UInt16(3)), (4, 2)] {
            #expect(throws: TrustError.self) { try key.open(sealed, chunk: chunk, index: index) }
        }
        var elsewhere = layout
        elsewhere.contentId = other
        #expect(throws: TrustError.self) { try contentKey.packetKey(for: elsewhere).open(sealed, chunk: 3, index: 2) }
        #expect(throws: TrustError.self) { try ContentKey.random().packetKey(for: layout).open(sealed, chunk: 3, index: 2) }
        var flipped = sealed
        flipped[100] ^= 1
        #expect(throws: TrustError.self) { try key.open(flipped, chunk: 3, index: 2) }
        #expect(throws: TrustError.self) { try key.open(sealed.prefix(10), chunk: 3, index: 2) }
    }

    /// Hole 2 of the trust review: the nonce is the chunk and packet number, so under one key a
    /// session claiming 512-byte packets would seal other bytes under the nonces of a normal
    /// session, and whoever saw both could XOR the plaintext out. Each layout has its own key:
    /// the same nonce in two layouts never shares a keystream.
    @Test func noTwoLayoutsShareAKeystream() throws {
        let contentKey = ContentKey.random()
        var small = layout
        small.packetSize = 512
        var wide = layout
        wide.chunkSize = 2 << 20
        let zeros = Data(count: 512)
        let streams = try [layout, small, wide].map { try contentKey.packetKey(for: $0).seal(zeros, chunk: 0, index: 1).prefix(512) }
        #expect(Set(streams).count == 3)
        let sealed = try contentKey.packetKey(for: small).seal(packet.prefix(512), chunk: 0, index: 1)
        #expect(throws: TrustError.self) { try contentKey.packetKey(for: layout).open(sealed, chunk: 0, index: 1) }
        // Nor is any layout's key the content key itself.
        let raw = try ChaChaPoly.seal(zeros, using: SymmetricKey(data: contentKey.raw), nonce: try ChaChaPoly.Nonce(data: Data([0, 0, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 6))))
        #expect(!streams.contains(raw.ciphertext))
    }

    @Test func aWrappedKeyOpensOnlyForItsDevice() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-wrap-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let device = try DeviceKeys.loadOrCreate(directory: directory.appendingPathComponent("a"))
        let stranger = try DeviceKeys.loadOrCreate(directory: directory.appendingPathComponent("b"))
        let id = try DeviceID("dev-a")
        let key = ContentKey.random()
        let wrapped = try KeyWrap.wrap(key, for: device.agreementPublicKey, content: content, device: id)
        #expect(try JSONCoding.decoder.decode(WrappedContentKey.self, from: JSONCoding.encoder.encode(wrapped)) == wrapped)
        #expect(try device.unwrap(wrapped, device: id) == key)
        #expect(throws: TrustError.self) { try stranger.unwrap(wrapped, device: id) }
        #expect(throws: TrustError.self) { try device.unwrap(wrapped, device: try DeviceID("dev-b")) }
        var retargeted = wrapped
        retargeted.contentId = other
        #expect(throws: TrustError.self) { try device.unwrap(retargeted, device: id) }
        #expect(throws: TrustError.badKey) { try KeyWrap.wrap(key, for: "not a key", content: content, device: id) }
    }

    /// Hole 7: wrapping needs only a device's public key, so whoever answered in the origin's
    /// place could hand a device a content key of its choosing. The origin signs each wrapping.
    @Test func aWrappedKeyIsBelievedOnlyWithTheOriginsSignature() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-wrap-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let device = try DeviceKeys.loadOrCreate(directory: directory)
        let id = try DeviceID("dev-a")
        let origin = SigningKey.random(), impostor = SigningKey.random()
        let originKey = try VerifyingKey(base64: origin.publicKey)
        let signed = try KeyWrap.wrap(ContentKey.random(), for: device.agreementPublicKey, content: content, device: id, signedBy: origin)
        try KeyWrap.verify(signed, device: id, origin: originKey)
        #expect(try JSONCoding.decoder.decode(WrappedContentKey.self, from: JSONCoding.encoder.encode(signed)) == signed)
        // The attacker's own key, wrapped for the device: unsigned, or signed by another key.
        let chosen = try KeyWrap.wrap(ContentKey.random(), for: device.agreementPublicKey, content: content, device: id)
        #expect(throws: TrustError.self) { try KeyWrap.verify(chosen, device: id, origin: originKey) }
        let forged = try KeyWrap.wrap(ContentKey.random(), for: device.agreementPublicKey, content: content, device: id, signedBy: impostor)
        #expect(throws: TrustError.self) { try KeyWrap.verify(forged, device: id, origin: originKey) }
        // The origin's signature, moved onto another wrapping, another device or content.
        var swapped = chosen
        swapped.signature = signed.signature
        #expect(throws: TrustError.self) { try KeyWrap.verify(swapped, device: id, origin: originKey) }
        #expect(throws: TrustError.self) { try KeyWrap.verify(signed, device: try DeviceID("dev-b"), origin: originKey) }
        var retargeted = signed
        retargeted.contentId = other
        #expect(throws: TrustError.self) { try KeyWrap.verify(retargeted, device: id, origin: originKey) }
    }
}

extension PacketKey {
    /// The opened bytes of a packet held in a `Data`, as the receiving link opens one from its frame.
    func open(_ sealed: Data, chunk: UInt32, index: UInt16) throws -> Data {
        try sealed.withUnsafeBytes { try open($0, chunk: chunk, index: index).plain }
    }
}
