import FerryProtocol
import FerryTrust
import Foundation
import Testing

@Suite struct ContentSealing {
    let content = try! ContentID(String(repeating: "ab", count: 32))
    let other = try! ContentID(String(repeating: "cd", count: 32))
    let packet = Data((0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 7) })

    @Test func aPacketOpensOnlyWhereItWasSealed() throws {
        let key = ContentKey.random()
        let sealed = try key.seal(packet, content: content, chunk: 3, index: 2)
        #expect(sealed.count == packet.count + ContentKey.overhead)
        #expect(sealed.range(of: packet.prefix(64)) == nil)
        #expect(try key.open(sealed, content: content, chunk: 3, index: 2) == packet)
        // The same bytes sealed again are the same ciphertext, so one copy serves every recipient.
        #expect(try key.seal(packet, content: content, chunk: 3, index: 2) == sealed)
        for (c, chunk, index) in [(content, UInt32(3), UInt16(3)), (content, 4, 2), (other, 3, 2)] {
            #expect(throws: TrustError.self) { try key.open(sealed, content: c, chunk: chunk, index: index) }
        }
        #expect(throws: TrustError.self) { try ContentKey.random().open(sealed, content: content, chunk: 3, index: 2) }
        var flipped = sealed
        flipped[100] ^= 1
        #expect(throws: TrustError.self) { try key.open(flipped, content: content, chunk: 3, index: 2) }
        #expect(throws: TrustError.self) { try key.open(sealed.prefix(10), content: content, chunk: 3, index: 2) }
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
}
