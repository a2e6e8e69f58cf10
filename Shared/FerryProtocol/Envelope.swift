import Foundation

/// A control message: self-describing JSON, because these are few and must be readable from any
/// language. Bulk data uses the binary `PacketHeader` instead.
public protocol WireMessage: Codable, Sendable, Equatable {
    /// The message's name on the wire (the envelope's second frame).
    static var kind: String { get }
    /// Field rules beyond the JSON shape; called on every decode.
    func validate() throws
}

extension WireMessage {
    public func validate() throws {}
}

/// Control messages travel as three frames: `[version, kind, JSON body]` (a ROUTER adds the
/// peer's routing id in front). The version frame comes first so a future protocol can be told
/// apart before anything else is parsed.
public struct Envelope: Sendable, Equatable {
    public static let version = "ferry/1"
    /// No control message is anywhere near this; anything larger is refused unread.
    public static let maxBodyBytes = 4 << 20

    public let kind: String
    public let body: Data

    public init(kind: String, body: Data) {
        self.kind = kind
        self.body = body
    }

    public init<M: WireMessage>(_ message: M) throws {
        kind = M.kind
        body = try JSONCoding.encoder.encode(message)
    }

    public var frames: [Data] { [Data(Self.version.utf8), Data(kind.utf8), body] }

    /// Reads the envelope out of frames (without a routing id).
    public init(frames: [Data]) throws {
        guard frames.count == 3 else { throw WireError.malformed("expected 3 frames [version, kind, body], got \(frames.count)") }
        let version = String(decoding: frames[0], as: UTF8.self)
        guard version == Self.version else { throw WireError.unsupportedVersion(String(version.prefix(32))) }
        guard frames[2].count <= Self.maxBodyBytes else { throw WireError.tooLarge(frames[2].count, limit: Self.maxBodyBytes) }
        kind = String(decoding: frames[1], as: UTF8.self)
        body = frames[2]
    }

    public func decode<M: WireMessage>(_ type: M.Type) throws -> M {
        guard kind == M.kind else { throw WireError.unknownKind(kind) }
        let message: M
        do {
            message = try JSONCoding.decoder.decode(M.self, from: body)
        } catch let error as WireError {
            throw error
        } catch {
            throw WireError.malformed("\(M.kind): \(Self.summary(of: error))")
        }
        try message.validate()
        return message
    }

    static func summary(of error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing field \(key.stringValue)"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.dataCorrupted(let context):
            context.underlyingError.map { "\($0)" } ?? "not JSON at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        default: "\(error)"
        }
    }
}

extension WireMessage {
    public func frames() throws -> [Data] { try Envelope(self).frames }

    public static func decode(frames: [Data]) throws -> Self { try Envelope(frames: frames).decode(Self.self) }
}

public enum JSONCoding {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static var decoder: JSONDecoder { JSONDecoder() }
}
