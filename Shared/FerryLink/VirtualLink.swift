import FerryProtocol
import Foundation

/// Steps (d), (e) and (f): one party's virtual network connection for one session. The device
/// that sends, the device that receives and every relay between them each spawn one. It has
/// its own overlay address (its ZeroMQ routing id), its own flow-control state and counters,
/// and its own lifetime; nothing in it is shared with another session.
public final class VirtualLink {
    public enum Role: String, Sendable {
        case sender, receiver, relay
    }

    public let sessionId: SessionID
    public let requestId: RequestID
    public let address: String
    public let role: Role
    public var credit: CreditWindow
    public var counters = LinkCounters()
    public private(set) var lastActivity = ContinuousClock.now
    public let idleTimeout: Duration

    public init(sessionId: SessionID, requestId: RequestID, address: String, role: Role, window: Int, idleTimeout: Duration) {
        self.sessionId = sessionId
        self.requestId = requestId
        self.address = address
        self.role = role
        self.credit = CreditWindow(window: window)
        self.idleTimeout = idleTimeout
    }

    public func touch() { lastActivity = .now }

    public func isIdle(at now: ContinuousClock.Instant = .now) -> Bool { now - lastActivity > idleTimeout }
}
