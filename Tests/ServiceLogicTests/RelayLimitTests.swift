@testable import FerryRelay
import FerryProtocol
import Foundation
import Testing
import ZeroMQ

@Suite struct RelayLimits {
    func link(quota: UInt64? = nil, rate: UInt64? = nil) throws -> RelayLink {
        try RelayLink(open: LinkOpen(sessionId: SessionID(1), requestId: try RequestID("r"), contentId: try ContentID(String(repeating: "a", count: 64)),
                                     address: "100.96.0.3", upstream: LinkHop(address: "100.96.0.2"), downstream: LinkHop(address: "100.96.0.1"),
                                     window: 32, idleTimeoutMilliseconds: 1000, quotaBytes: quota, bytesPerSecond: rate),
                      relayId: try RelayID("relay-1"), context: try Context(), security: .off)
    }

    func packet(_ bytes: Int) -> [Message] { [Message(Data(count: 32)), Message(Data(count: bytes))] }

    @Test func theQuotaCountsPayloadForwarded() throws {
        let limited = try link(quota: 3000)
        #expect(limited.forwarding.withinQuota(3000))
        #expect(try link().forwarding.withinQuota(.max))
    }

    @Test func theRateLetsABurstThroughThenHoldsBack() throws {
        let paced = try link(rate: 512 << 10)
        var sent = 0
        while paced.rateAllows(packet(65_536)).allowed, sent < 100 {
            paced.paid(65_536)
            sent += 1
        }
        #expect(sent == 16, "a 1 MiB burst is 16 packets of 64 KiB; \(sent) went")
        #expect(paced.throttled)
        #expect(paced.rateAllows([Message(Data(count: 32))]) == (true, 0), "control frames are never held back")
        #expect(try link().rateAllows(packet(1 << 20)).allowed)
    }
}
