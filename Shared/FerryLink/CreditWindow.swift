/// End-to-end flow control for one session, in packets.
///
/// The receiver grants credit as it consumes packets: "you may send every packet with
/// sequence < limit". Credit is cumulative, so a repeated or late grant is harmless, and the
/// sender can never have more than `window` packets unconsumed anywhere on the path — which is
/// also what bounds every relay's queue for the session. High-water marks are not used for
/// this: a ROUTER at its limit drops silently.
public struct CreditWindow: Sendable, Equatable {
    public let window: UInt32
    /// Sender side: the limit granted so far, and the next sequence number to send.
    public private(set) var limit: UInt32 = 0
    public private(set) var nextSequence: UInt32 = 0
    /// Receiver side: packets consumed, and the limit last granted.
    public private(set) var consumed: UInt32 = 0
    public private(set) var granted: UInt32 = 0

    public init(window: Int) {
        precondition(window > 0)
        self.window = UInt32(window)
    }

    // MARK: sender

    public var canSend: Bool { nextSequence < limit }

    /// Takes the next sequence number; call only when `canSend`.
    public mutating func take() -> UInt32 {
        precondition(canSend, "sending beyond the granted credit")
        defer { nextSequence += 1 }
        return nextSequence
    }

    /// Applies a credit grant; returns whether it raised the limit.
    @discardableResult
    public mutating func grant(upTo newLimit: UInt32) -> Bool {
        guard newLimit > limit else { return false }
        limit = newLimit
        return true
    }

    // MARK: receiver

    /// The first grant: a whole window.
    public mutating func initialGrant() -> UInt32 {
        granted = consumed + window
        return granted
    }

    /// Counts one consumed packet. Returns a new limit to send when enough of the window has
    /// been used that a grant is worth a message (a quarter of it), else nil.
    public mutating func consume() -> UInt32? {
        consumed += 1
        let target = consumed + window
        guard target - granted >= max(1, window / 4) else { return nil }
        granted = target
        return target
    }
}
