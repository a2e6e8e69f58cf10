@testable import FerryBroker
import FerryProtocol
import Testing

/// Hole 6 of the trust review: a packet that failed its tag banned the sender, though a relay
/// could have altered it, and a sender (which holds the content key) could so frame an honest
/// relay. Blame now needs different partners, except for what only a key holder can make.
@Suite struct Blame {
    let b = try! DeviceID("dev-b"), c = try! DeviceID("dev-c")
    let r1 = try! RelayID("relay-1"), r2 = try! RelayID("relay-2")

    @Test func oneTagFailureConvictsNobody() {
        var ledger = BlameLedger()
        #expect(ledger.record(.unopened(sender: b, relay: r1)).isEmpty)
        // The same pair again is still one partner each: a sender can't frame a relay by repeating.
        #expect(ledger.record(.unopened(sender: b, relay: r1)).isEmpty)
    }

    @Test func aSenderWhosePacketsFailThroughTwoRelaysIsBanned() {
        var ledger = BlameLedger()
        _ = ledger.record(.unopened(sender: b, relay: r1))
        #expect(ledger.record(.unopened(sender: b, relay: r2)) == [.banSender(b)])
    }

    @Test func aRelayThroughWhichTwoSendersFailIsEvicted() {
        var ledger = BlameLedger()
        _ = ledger.record(.unopened(sender: b, relay: r1))
        #expect(ledger.record(.unopened(sender: c, relay: r1)) == [.evictRelay(r1)])
        #expect(ledger.partners(ofRelay: r1) == 2 && ledger.partners(ofSender: b) == 1)
    }

    @Test func aChunkThatOpenedButIsWrongIsTheSendersAlone() {
        var ledger = BlameLedger()
        #expect(ledger.record(.wrongChunk(sender: b)) == [.banSender(b)])
        // And it counts nothing against the relay.
        #expect(ledger.partners(ofRelay: r1) == 0)
    }
}
