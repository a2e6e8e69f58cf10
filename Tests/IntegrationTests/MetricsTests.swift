import FerryProtocol
import Foundation
import Testing

@Suite struct PrometheusMetrics {
    /// Every service serves /metrics, and the numbers follow what actually happened.
    @Test func metricsCountWhatHappened() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let content = try stack.publish(try stack.randomFile("m.bin", mebibytes: 8))
        #expect(try stack.get(content, via: b).ok)
        try waitForHoldings(stack, b, hold: content)
        let result = try stack.get(content, via: a)
        #expect(result.ok && result.sources.map(\.kind) == [.peer])
        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: result.requestId?.rawValue)
        let size = Double(8 << 20)

        let relay = try stack.scrape("relay-1")
        #expect(Stack.sample(relay, "ferry_relay_payload_bytes_total") == size, "\(relay)")
        #expect(Stack.sample(relay, "ferry_relay_packets_total") == 128)
        let reporter = try stack.scrape("reporter")
        #expect(Stack.sample(reporter, #"ferry_fulfilments_total{verification="matched"}"#) == 1)
        #expect(Stack.sample(reporter, #"ferry_fulfilments_total{verification="origin-only"}"#) == 1)
        #expect(Stack.sample(reporter, #"ferry_fulfilment_bytes_total{source="peers"}"#) == size)
        try waitUntil("the second delivery to be counted") {
            Stack.sample(try stack.scrape("reporter"), #"ferry_deliveries_total{result="acknowledged"}"#) == 2
        }
        let matcher = try stack.scrape("matcher")
        #expect(Stack.sample(matcher, #"ferry_matches_total{result="peer"}"#) == 1)
        #expect(Stack.sample(matcher, #"ferry_matches_total{result="origin"}"#) == 1)
        let intake = try stack.scrape("intake")
        #expect(Stack.sample(intake, #"ferry_intake_requests_total{outcome="accepted"}"#) == 2)
        #expect(Stack.sample(try stack.scrape("agent-a"), #"ferry_agent_received_bytes_total{source="peer"}"#) == size)
        try waitUntil("the sender to count what it sent") { Stack.sample(try stack.scrape("agent-b"), "ferry_agent_sent_bytes_total") == size }
        #expect(try stack.scrape("broker").contains("ferry_sessions_active"))
        #expect((Stack.sample(try stack.scrape("eventbus"), "ferry_events_forwarded_total") ?? 0) > 10)
        #expect(try stack.http("GET", "/metrics").status == 200)
    }
}
