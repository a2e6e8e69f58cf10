/// Free-form JSON, for event details whose shape differs per topic.
public enum JSONValue: Codable, Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case number(Double)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .number(let value):
            if value == value.rounded(), abs(value) < 9e15 { try container.encode(Int64(value)) } else { try container.encode(value) }
        case .bool(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }

    public var description: String {
        switch self {
        case .string(let value): value
        case .number(let value): value == value.rounded() && abs(value) < 9e15 ? String(Int64(value)) : String(value)
        case .bool(let value): String(value)
        case .array(let value): "[" + value.map(\.description).joined(separator: ", ") + "]"
        case .object(let value): "{" + value.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        case .null: "null"
        }
    }

    public var stringValue: String? { if case .string(let value) = self { value } else { nil } }
    public var numberValue: Double? { if case .number(let value) = self { value } else { nil } }
    public subscript(key: String) -> JSONValue? { if case .object(let value) = self { value[key] } else { nil } }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(_ value: some BinaryInteger) { self = .number(Double(value)) }
    public init(_ value: String?) { self = value.map { .string($0) } ?? .null }
}

extension Dictionary where Key: RawRepresentable<String>, Value: BinaryInteger {
    /// Counts keyed by a named reason, as the fields of a status report or an event.
    public var byName: [String: JSONValue] {
        Dictionary<String, JSONValue>(uniqueKeysWithValues: map { ($0.key.rawValue, JSONValue($0.value)) })
    }
}
