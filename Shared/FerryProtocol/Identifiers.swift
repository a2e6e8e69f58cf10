import Foundation

/// A textual identifier (device, request, relay). Restricted to a safe alphabet and length so
/// it can be a file name, a log field and a ZeroMQ routing id without escaping.
public struct Identifier<Tag: IdentifierTag>: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let rawValue: String

    public init(_ rawValue: String) throws {
        guard Self.isValid(rawValue) else {
            throw WireError.invalid("\(Tag.name) must be 1-128 characters of A-Z a-z 0-9 . _ : - (got \(rawValue.debugDescription.prefix(40)))")
        }
        self.rawValue = rawValue
    }

    public static func isValid(_ value: String) -> Bool {
        guard (1...128).contains(value.utf8.count) else { return false }
        return value.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == 0x2E || c == 0x5F || c == 0x3A || c == 0x2D
        }
    }

    /// A fresh random identifier with a readable prefix, e.g. `dev-3f9c…`.
    public static func random(prefix: String) -> Self {
        try! Self("\(prefix)-\(UUID().uuidString.lowercased())")
    }

    public init(from decoder: Decoder) throws {
        try self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

public protocol IdentifierTag: Sendable { static var name: String { get } }
public enum DeviceTag: IdentifierTag { public static let name = "device id" }
public enum RequestTag: IdentifierTag { public static let name = "request id" }
public enum RelayTag: IdentifierTag { public static let name = "relay id" }

public typealias DeviceID = Identifier<DeviceTag>
public typealias RequestID = Identifier<RequestTag>
public typealias RelayID = Identifier<RelayTag>

/// Content is named by its root hash (see `Manifest`): 64 lowercase hex digits.
public struct ContentID: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let hex: String

    public init(_ hex: String) throws {
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw WireError.invalid("content id must be 64 lowercase hex digits (got \(hex.debugDescription.prefix(80)))")
        }
        self.hex = hex
    }

    public init(from decoder: Decoder) throws { try self.init(try decoder.singleValueContainer().decode(String.self)) }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }

    public var description: String { hex }
    public var short: String { String(hex.prefix(12)) }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.hex < rhs.hex }
}

/// A session is named by 64 random bits, written as 16 hex digits so JSON readers in any
/// language keep every bit (a JSON number would not survive JavaScript).
public struct SessionID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let value: UInt64

    public init(_ value: UInt64) { self.value = value }

    public init(hex: String) throws {
        guard hex.utf8.count == 16, let value = UInt64(hex, radix: 16) else {
            throw WireError.invalid("session id must be 16 hex digits (got \(hex.debugDescription.prefix(40)))")
        }
        self.value = value
    }

    public static func random() -> SessionID {
        var generator = SystemRandomNumberGenerator()
        return SessionID(UInt64.random(in: 1...UInt64.max, using: &generator))
    }

    public var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    public init(from decoder: Decoder) throws { try self.init(hex: try decoder.singleValueContainer().decode(String.self)) }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }

    public var description: String { hex }
}
