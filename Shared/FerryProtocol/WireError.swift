/// Why bytes from the wire were refused. Every decoder reports one of these instead of trapping,
/// so a service can count the drop and keep serving.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupportedVersion(String)
    case unknownKind(String)
    case invalid(String)
    case tooLarge(Int, limit: Int)

    /// A short stable name for counters and event fields.
    public var reason: String {
        switch self {
        case .malformed: "malformed"
        case .unsupportedVersion: "unsupported-version"
        case .unknownKind: "unknown-kind"
        case .invalid: "invalid"
        case .tooLarge: "too-large"
        }
    }

    public var description: String {
        switch self {
        case .malformed(let detail): "malformed message: \(detail)"
        case .unsupportedVersion(let version): "unsupported protocol version \(version.debugDescription)"
        case .unknownKind(let kind): "unknown message kind \(kind.debugDescription)"
        case .invalid(let detail): "invalid message: \(detail)"
        case .tooLarge(let size, let limit): "message of \(size) bytes exceeds the limit of \(limit)"
        }
    }
}
