import Crypto
import FerryProtocol
import Foundation

/// The key content travels under between devices. The origin makes one per content when it is
/// published and keeps it; a device gets it wrapped for its own X25519 key, and relays never do.
public struct ContentKey: Sendable, Equatable {
    public let raw: Data

    /// ChaChaPoly's tag: every sealed packet is this much longer than its bytes.
    public static let overhead = ContentSummary.sealOverhead

    public init(raw: Data) throws {
        guard raw.count == 32 else { throw TrustError.io("a content key is 32 bytes") }
        self.raw = raw
    }

    public static func random() -> ContentKey { try! ContentKey(raw: SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }) }

    /// The key packets travel under in one layout. Devices never seal with the content key
    /// itself: the nonce is the chunk and packet number, which names other bytes in another
    /// layout, so each layout gets its own key and no session, whatever layout it claims, can
    /// reuse another's keystream.
    public func packetKey(for layout: ContentSummary) -> PacketKey { PacketKey(contentKey: self, layout: layout) }
}

/// Seals and opens the packets of one content in one layout (chunk and packet size), under a
/// key HKDF-SHA256 derives from the content key, the content id and the layout.
public struct PacketKey {
    public let layout: ContentSummary
    private let key: SymmetricKey

    init(contentKey: ContentKey, layout: ContentSummary) {
        self.layout = layout
        key = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: contentKey.raw), salt: Data(layout.contentId.hex.utf8),
                                     info: Data("ferry-packet-key-v1\n\(layout.chunkSize)\n\(layout.packetSize)".utf8), outputByteCount: 32)
    }

    /// Seals one packet. Only what a relay must not change is authenticated (content, chunk,
    /// packet, length), nothing of the session, so the same ciphertext serves every recipient.
    public func seal(_ packet: Data, chunk: UInt32, index: UInt16) throws -> Data {
        let box = try ChaChaPoly.seal(packet, using: key, nonce: Self.nonce(chunk, index),
                                      authenticating: Self.header(layout.contentId, chunk, index, packet.count))
        return box.ciphertext + box.tag
    }

    /// The packet's bytes, or `TrustError.badToken` when it was not sealed under this key for
    /// this place in this content. It opens straight from the buffer the packet arrived in,
    /// copying it once: `sealed` is that copy, the packet as it came (a slice of the box), for
    /// passing it on.
    public func open(_ sealed: UnsafeRawBufferPointer, chunk: UInt32, index: UInt16) throws -> (plain: Data, sealed: Data) {
        guard sealed.count >= ContentKey.overhead else { throw TrustError.badToken("sealed packet too short") }
        let length = sealed.count - ContentKey.overhead
        do {
            let nonce = try Self.nonce(chunk, index)
            let box = try ChaChaPoly.SealedBox(nonce: nonce, ciphertext: UnsafeRawBufferPointer(rebasing: sealed[..<length]),
                                               tag: UnsafeRawBufferPointer(rebasing: sealed[length...]))
            let plain = try ChaChaPoly.open(box, using: key, authenticating: Self.header(layout.contentId, chunk, index, length))
            return (plain, box.combined.dropFirst(Self.nonceLength))
        } catch {
            throw TrustError.badToken("sealed packet failed authentication")
        }
    }

    /// ChaChaPoly's nonce, which a sealed box's combined bytes start with.
    static let nonceLength = 12

    static func nonce(_ chunk: UInt32, _ index: UInt16) throws -> ChaChaPoly.Nonce {
        var bytes = Data(count: nonceLength)
        withUnsafeBytes(of: chunk.bigEndian) { bytes.replaceSubrange(0..<4, with: $0) }
        withUnsafeBytes(of: index.bigEndian) { bytes.replaceSubrange(4..<6, with: $0) }
        return try ChaChaPoly.Nonce(data: bytes)
    }

    static func header(_ content: ContentID, _ chunk: UInt32, _ index: UInt16, _ length: Int) -> Data {
        Data("ferry-packet-v1\n\(content.hex)\n\(chunk)\n\(index)\n\(length)".utf8)
    }
}

/// Wrapping a content key for one device: an ephemeral X25519 agreement with the device's
/// enrolled key, HKDF-SHA256 bound to the content and the device, then ChaChaPoly.
public enum KeyWrap {
    public static func wrap(_ key: ContentKey, for agreementKey: String, content: ContentID, device: DeviceID) throws -> WrappedContentKey {
        guard let raw = Data(base64Encoded: agreementKey), let recipient = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: raw) else {
            throw TrustError.badKey
        }
        let ephemeral = Curve25519.KeyAgreement.PrivateKey()
        let wrapping = try wrappingKey(try ephemeral.sharedSecretFromKeyAgreement(with: recipient), content: content, device: device)
        let sealed = try ChaChaPoly.seal(key.raw, using: wrapping)
        return WrappedContentKey(contentId: content, ephemeralKey: ephemeral.publicKey.rawRepresentation.base64EncodedString(),
                                 sealedKey: sealed.combined.base64EncodedString())
    }

    /// What the origin signs: the wrapping and whom it is for, so a wrapping can't be passed
    /// off as another device's or another content's.
    public static func signedBytes(_ wrapped: WrappedContentKey, device: DeviceID) -> Data {
        Data("ferry-wrapped-key-v1\n\(wrapped.contentId.hex)\n\(device.rawValue)\n\(wrapped.ephemeralKey)\n\(wrapped.sealedKey)".utf8)
    }

    /// Wraps and signs with the origin's key.
    public static func wrap(_ key: ContentKey, for agreementKey: String, content: ContentID, device: DeviceID,
                            signedBy origin: SigningKey) throws -> WrappedContentKey {
        var wrapped = try wrap(key, for: agreementKey, content: content, device: device)
        wrapped.signature = try origin.signature(for: signedBytes(wrapped, device: device)).base64EncodedString()
        return wrapped
    }

    /// Throws `TrustError.badToken` unless the origin's key signed this wrapping for `device`.
    public static func verify(_ wrapped: WrappedContentKey, device: DeviceID, origin: VerifyingKey) throws {
        guard let signature = wrapped.signature.flatMap({ Data(base64Encoded: $0) }),
              origin.isValid(signature, for: signedBytes(wrapped, device: device)) else {
            throw TrustError.badToken("the content key was not signed by the origin")
        }
    }

    static func wrappingKey(_ secret: Crypto.SharedSecret, content: ContentID, device: DeviceID) throws -> SymmetricKey {
        secret.hkdfDerivedSymmetricKey(using: SHA256.self, salt: Data(content.hex.utf8),
                                       sharedInfo: Data("ferry-content-key-v1\n\(device.rawValue)".utf8), outputByteCount: 32)
    }
}

extension DeviceKeys {
    /// The content key the origin wrapped for this device.
    public func unwrap(_ wrapped: WrappedContentKey, device: DeviceID) throws -> ContentKey {
        do {
            let agreement = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: agreementRaw)
            guard let ephemeralRaw = Data(base64Encoded: wrapped.ephemeralKey), let sealed = Data(base64Encoded: wrapped.sealedKey) else {
                throw TrustError.badKey
            }
            let ephemeral = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: ephemeralRaw)
            let wrapping = try KeyWrap.wrappingKey(try agreement.sharedSecretFromKeyAgreement(with: ephemeral), content: wrapped.contentId, device: device)
            return try ContentKey(raw: try ChaChaPoly.open(ChaChaPoly.SealedBox(combined: sealed), using: wrapping))
        } catch {
            throw TrustError.badToken("the content key was not wrapped for this device")
        }
    }
}
