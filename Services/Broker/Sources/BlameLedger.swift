import FerryProtocol

/// Whom to blame when a receiver's packets fail. A packet that doesn't open could have been
/// altered by the relay, or sealed wrong by the sender, which holds the content key and could
/// so frame an honest relay. So a tag failure counts against both, and convicts only with
/// different partners: a sender whose packets failed through two relays, a relay through which
/// two senders' packets failed. A chunk that opened but fails its hash was made by a holder of
/// the key; relays never hold it, so on a path of relays that is the sender alone.
struct BlameLedger: Sendable {
    enum Verdict: Equatable, Sendable {
        case banSender(DeviceID)
        case evictRelay(RelayID)
    }

    /// What a receiver reported of one session.
    enum Failure: Equatable, Sendable {
        /// Packets that failed their tag, from `sender` through `relay`.
        case unopened(sender: DeviceID, relay: RelayID)
        /// Chunks whose packets opened but whose bytes fail the manifest's hash.
        case wrongChunk(sender: DeviceID)
    }

    /// How many different partners a party's tag failures need before it is blamed alone.
    static let partnersToConvict = 2

    private var relaysBySender: [DeviceID: Set<RelayID>] = [:]
    private var sendersByRelay: [RelayID: Set<DeviceID>] = [:]

    mutating func record(_ failure: Failure) -> [Verdict] {
        switch failure {
        case .wrongChunk(let sender):
            return [.banSender(sender)]
        case .unopened(let sender, let relay):
            relaysBySender[sender, default: []].insert(relay)
            sendersByRelay[relay, default: []].insert(sender)
            var verdicts: [Verdict] = []
            if relaysBySender[sender, default: []].count >= Self.partnersToConvict { verdicts.append(.banSender(sender)) }
            if sendersByRelay[relay, default: []].count >= Self.partnersToConvict { verdicts.append(.evictRelay(relay)) }
            return verdicts
        }
    }

    /// Tag failures counted against `relay` and `sender` so far (for status and events).
    func partners(ofRelay relay: RelayID) -> Int { sendersByRelay[relay]?.count ?? 0 }
    func partners(ofSender sender: DeviceID) -> Int { relaysBySender[sender]?.count ?? 0 }
}
