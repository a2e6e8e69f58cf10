import FerryProtocol

/// A rate limit: bytes may go while the bucket holds enough tokens, which refill at `rate`
/// bytes a second up to `burst`. A device's upload cap (all its sending links share one) and a
/// relay's per-session limit.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    /// `burst` defaults to a tenth of a second's worth, at least one 1 MiB packet, so a cap is
    /// felt within a fraction of a second and the largest packet can always pass.
    public init(bytesPerSecond: UInt64, burst: UInt64? = nil, now: ContinuousClock.Instant = .now) {
        rate = Double(bytesPerSecond)
        self.burst = Double(burst ?? max(bytesPerSecond / 10, 1 << 20))
        tokens = self.burst
        last = now
    }

    /// Takes `bytes` if the bucket holds them.
    public mutating func take(_ bytes: Int, now: ContinuousClock.Instant = .now) -> Bool {
        guard holds(bytes, now: now) else { return false }
        tokens -= Double(bytes)
        return true
    }

    /// Whether `bytes` could be taken now, taking nothing: for a sender that pays only once
    /// the bytes have really gone.
    public mutating func holds(_ bytes: Int, now: ContinuousClock.Instant = .now) -> Bool {
        let elapsed = now - last
        last = now
        tokens = min(burst, tokens + rate * elapsed.inSeconds)
        return tokens >= Double(bytes)
    }
}
