import FerryService
import Testing

/// Hole 7 of the trust review: one global budget of look-ups a second, which a client cycling
/// through random keys used up, so enrolled parties on other addresses were refused unasked.
@Suite struct KeyLookupBudgets {
    @Test func oneAddressSpendsOnlyItsOwnShare() {
        var budget = KeyLookupBudget()
        let flood = (0..<1000).filter { _ in budget.spend(address: "10.0.0.66", second: 7) }.count
        #expect(flood == KeyLookupBudget.perAddressPerSecond)
        // Everyone else still gets theirs in the same second.
        let others = [budget.spend(address: "10.0.0.5", second: 7), budget.spend(address: "10.0.0.6", second: 7)]
        #expect(others == [true, true])
        // And the flooding address gets its share again the next second.
        let nextSecond = budget.spend(address: "10.0.0.66", second: 8)
        #expect(nextSecond)
    }

    @Test func allAddressesTogetherStayWithinTheServicesBudget() {
        var budget = KeyLookupBudget()
        let spent = (0..<200).filter { budget.spend(address: "10.0.\($0 / 250).\($0 % 250)", second: 1) }.count
        #expect(spent == KeyLookupBudget.perSecond)
        let nextSecond = budget.spend(address: "10.9.9.9", second: 2)
        #expect(nextSecond)
    }
}
