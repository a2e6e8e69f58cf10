import Foundation
import Synchronization

/// The nonces of signed device requests the origin has taken, each kept until its signature's
/// time window has passed, so a request copied off the wire can't be sent again while its
/// signature would still pass. Bounded: when full, the request is refused (`replay-window-full`)
/// rather than an entry forgotten early, which would let its request be replayed.
final class SeenNonces: Sendable {
    enum Verdict: Equatable { case fresh, replayed, full }

    private struct State {
        var expiries: [String: Int64] = [:]
        var nextSweep: Int64 = 0
    }

    private let state = Mutex(State())
    private let window: Int64
    private let limit: Int

    init(windowMilliseconds: Int64, limit: Int = 1_000_000) {
        window = windowMilliseconds
        self.limit = limit
    }

    /// Takes `nonce` for `device` once; a signature dated `timestamp` passes until `timestamp + window`.
    func admit(device: String, nonce: String, timestamp: Int64, now: Int64) -> Verdict {
        state.withLock { state in
            if now >= state.nextSweep || state.expiries.count >= limit {
                state.expiries = state.expiries.filter { $0.value > now }
                state.nextSweep = now + 10_000
            }
            let key = device + "\n" + nonce
            if let expiry = state.expiries[key], expiry > now { return .replayed }
            guard state.expiries.count < limit else { return .full }
            state.expiries[key] = max(timestamp, now) + window
            return .fresh
        }
    }
}
