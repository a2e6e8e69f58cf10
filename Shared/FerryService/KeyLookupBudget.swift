/// How many registry look-ups a key gate may spend on keys it has never admitted. Each source
/// address has its own small share a second, within a budget for all of them, so one client
/// cycling through fresh keys spends only its own share; keys the gate admitted before are
/// looked up again without spending any, so a flood never keeps an enrolled party out.
public struct KeyLookupBudget: Sendable {
    public static let perAddressPerSecond = 5
    public static let perSecond = 50

    private var second: Int64 = .min
    private var total = 0
    private var byAddress: [String: Int] = [:]

    public init() {}

    /// Whether a look-up of a never-admitted key from `address` may go ahead in `second`; spends it if so.
    public mutating func spend(address: String, second now: Int64) -> Bool {
        if now != second {
            second = now
            total = 0
            byAddress.removeAll(keepingCapacity: true)
        }
        let used = byAddress[address, default: 0]
        guard used < Self.perAddressPerSecond, total < Self.perSecond else { return false }
        byAddress[address] = used + 1
        total += 1
        return true
    }
}
