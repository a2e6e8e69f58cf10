import FerryProtocol
import FerryTrust
import Foundation
import Synchronization

/// Whether a CURVE key belongs to an enrolled, unrevoked device or relay, as the origin's
/// registry says (`GET /v1/transport-keys/{hex}`, answers signed with the origin's key from
/// the fleet's keys). Asked from a ZAP handler's thread, so it blocks, briefly, and caches:
/// an admitted key for a minute, a refused one for a second, so a client retrying its
/// connection costs the origin one request a second; look-ups of keys never admitted are
/// budgeted per source address (`KeyLookupBudget`).
public final class EnrolledKeys: Sendable {
    public struct Party: Sendable, Equatable {
        public var kind: PartyKind
        public var id: String
    }

    private struct Entry {
        var party: Party?
        var until: ContinuousClock.Instant
    }

    private let registry: URL
    private let originKey: VerifyingKey
    private let cache = Mutex<[[UInt8]: Entry]>([:])
    static let admittedFor: Duration = .seconds(60)
    static let refusedFor: Duration = .seconds(1)
    /// Past it, never-admitted keys are refused unasked, so a flood of fresh keys can't turn
    /// into a flood of registry look-ups, nor use up what other addresses and known keys need.
    private let budget = Mutex(KeyLookupBudget())
    /// Keys admitted before, kept past their cache entry (bounded), so looking one up again
    /// spends no budget.
    private let known = Mutex<Set<[UInt8]>>([])
    /// How old a signed answer may be: bounds the replay of an answer for a key since revoked.
    static let answerLifetimeMilliseconds: Int64 = 60_000

    public init(registry: URL, originSigningKey: String) throws {
        self.registry = registry
        originKey = try VerifyingKey(base64: originSigningKey)
    }

    /// The party `key` belongs to, or nil. `address`: where the connection comes from, whose
    /// share of the look-up budget a never-admitted key spends.
    public func party(for key: [UInt8], from address: String) -> Party? {
        let now = ContinuousClock.now
        if let entry = cache.withLock({ $0[key] }), entry.until > now { return entry.party }
        if !known.withLock({ $0.contains(key) }) {
            let second = SessionTokens.nowMilliseconds() / 1000
            guard budget.withLock({ $0.spend(address: address, second: second) }) else { return nil }
        }
        let party = ask(key)
        cache.withLock { cache in
            if cache.count > 100_000 { cache.removeAll() }
            cache[key] = Entry(party: party, until: now + (party == nil ? Self.refusedFor : Self.admittedFor))
        }
        if party != nil {
            known.withLock { known in
                if known.count > 100_000 { known.removeAll() }
                known.insert(key)
            }
        }
        return party
    }

    /// A revoked party is refused from its next connection on, not a minute later.
    public func forget(id: String) {
        cache.withLock { cache in
            let keys = cache.filter { $0.value.party?.id == id }.map(\.key)
            known.withLock { known in known.subtract(keys) }
            cache = cache.filter { $0.value.party?.id != id }
        }
    }

    private func ask(_ key: [UInt8]) -> Party? {
        let hex = Hex.encode(key)
        guard let response = try? BlockingHTTP.get(registry.appendingPathComponent("v1/transport-keys/\(hex)"), timeout: 3),
              response.ok,
              let signed = try? JSONCoding.decoder.decode(SignedTransportKeyAnswer.self, from: response.body),
              let bytes = Data(base64Encoded: signed.answer), let signature = Data(base64Encoded: signed.signature),
              originKey.isValid(signature, for: bytes),
              let answer = try? JSONCoding.decoder.decode(TransportKeyAnswer.self, from: bytes),
              answer.key == Data(key).base64EncodedString(),
              abs(SessionTokens.nowMilliseconds() - answer.issuedAt) <= Self.answerLifetimeMilliseconds else {
            return nil
        }
        return Party(kind: answer.kind, id: answer.id)
    }
}
