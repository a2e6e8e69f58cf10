@testable import FerryOrigin
import FerryProtocol
import Testing

/// What the status page shows of a swarm, from the events alone: who asks, whom each device
/// gets the content from and through which relays, how much each holds, and the origin's share.
@Suite struct SwarmViewDecisions {
    var sequence: UInt64 = 0

    mutating func event(_ topic: EventTopic, _ request: String, _ data: [String: JSONValue]) -> FerryEvent {
        sequence += 1
        return FerryEvent(topic: topic.rawValue, time: "2026-12-06T00:00:\(String(format: "%02d", sequence % 60)).000000Z",
                          publisher: "test", seq: sequence, requestId: request, sessionId: nil, data: data)
    }

    @Test mutating func aChainShowsWhoFeedsWhomAndTheOriginsShare() {
        var view = SwarmView()
        let mib = 1_048_576.0
        for (request, device) in [("r1", "d1"), ("r2", "d2"), ("r3", "d3")] {
            view.apply(event(.requestReceived, request, ["deviceId": .string(device), "contentId": "c1", "size": .number(8 * mib)]))
        }
        view.apply(event(.requestReceived, "other", ["deviceId": "d1", "contentId": "c2", "size": .number(mib)]))
        view.apply(event(.transferStarted, "r1", ["deviceId": "d1", "source": "origin", "wantChunks": 32]))
        view.apply(event(.transferStarted, "r2", ["deviceId": "d2", "source": "d1", "relays": .array(["fwd-1"])]))
        view.apply(event(.transferStarted, "r3", ["deviceId": "d3", "source": "d2", "relays": .array(["fwd-2"])]))
        view.apply(event(.transferProgress, "r1", ["receivedBytes": .number(4 * mib), "totalBytes": .number(8 * mib), "source": "origin"]))
        view.apply(event(.transferProgress, "r2", ["receivedBytes": .number(3 * mib), "totalBytes": .number(8 * mib), "source": "peer:d1 via fwd-1"]))
        view.apply(event(.transferProgress, "r3", ["receivedBytes": .number(2 * mib), "totalBytes": .number(8 * mib),
                                                   "source": "peer:d2 via fwd-2 + origin"]))

        #expect(view.swarms.map(\.contentId) == ["c1", "c2"], "the swarm that moved last comes first")
        let swarm = view.swarms[0]
        #expect(swarm.members.map(\.deviceId) == ["d1", "d2", "d3"])
        #expect(swarm.members.map(\.from) == ["origin", "d1", "d2"])
        #expect(swarm.members.map(\.via) == [[], ["fwd-1"], ["fwd-2"]])
        #expect(swarm.members.map(\.receivedBytes) == [4 * mib, 3 * mib, 2 * mib])
        #expect(swarm.members.allSatisfy { $0.state == .receiving })
        #expect(swarm.bytesFromOrigin == 4 * mib && swarm.bytesFromPeers == 5 * mib)
        #expect(view.swarms[1].members.map(\.state) == [.asking])

        // Completion replaces the estimate with the device's own figures.
        view.apply(event(.transferCompleted, "r3", ["deviceId": "d3", "contentId": "c1", "size": .number(8 * mib),
                                                    "bytesFromPeers": .number(7 * mib), "bytesFromOrigin": .number(mib)]))
        view.apply(event(.transferFailed, "r2", ["deviceId": "d2", "contentId": "c1", "reason": "test"]))
        let after = view.swarms[0]
        #expect(after.members.map(\.state) == [.receiving, .failed, .completed])
        #expect(after.members[2].receivedBytes == 8 * mib)
        #expect(after.bytesFromOrigin == 5 * mib && after.bytesFromPeers == 10 * mib)
    }

    /// A device that several holders send a stripe each shows them all, in stripe order, with
    /// every relay; a stripe's new sender replaces its old one; a stripe that makes no sense is
    /// taken for the whole content.
    @Test mutating func aStripedDeviceShowsEachStripesSender() {
        var view = SwarmView()
        view.apply(event(.requestReceived, "r1", ["deviceId": "d1", "contentId": "c1", "size": 1_000]))
        func started(_ source: String, relay: String, stripe index: Int) -> FerryEvent {
            event(.transferStarted, "r1", ["deviceId": "d1", "source": .string(source), "relays": .array([.string(relay)]),
                                           "stripe": .object(["index": JSONValue(index), "count": 3])])
        }
        view.apply(started("h2", relay: "r-b", stripe: 1))
        #expect(view.swarms[0].members[0].stripes == ["", "h2", ""] && view.swarms[0].members[0].from == "h2")
        view.apply(started("h1", relay: "r-a", stripe: 0))
        view.apply(started("h3", relay: "r-a", stripe: 2))
        #expect(view.swarms[0].members[0].from == "h1+h2+h3" && view.swarms[0].members[0].via == ["r-b", "r-a"])
        view.apply(started("h1", relay: "r-a", stripe: 2))
        #expect(view.swarms[0].members[0].stripes == ["h1", "h2", "h1"] && view.swarms[0].members[0].from == "h1+h2")
        view.apply(event(.transferStarted, "r1", ["deviceId": "d1", "source": "h4", "stripe": .object(["index": 5, "count": 3])]))
        #expect(view.swarms[0].members[0].stripes == nil && view.swarms[0].members[0].from == "h4")
        view.apply(event(.transferStarted, "r1", ["deviceId": "d1", "source": "origin", "reason": "x"]))
        #expect(view.swarms[0].members[0].from == "origin" && view.swarms[0].members[0].via.isEmpty)
    }

    @Test mutating func itStaysBoundedAndIgnoresWhatItCannotPlace() {
        var view = SwarmView()
        // A transfer event for a request it never saw asked for changes nothing.
        view.apply(event(.transferProgress, "unknown", ["receivedBytes": 10, "totalBytes": 20, "source": "origin"]))
        #expect(view.swarms.isEmpty)
        for index in 0..<(SwarmView.swarmsKept + 3) {
            view.apply(event(.requestReceived, "r\(index)", ["deviceId": "d", "contentId": .string("c\(index)"), "size": 1]))
        }
        #expect(view.swarms.count == SwarmView.swarmsKept)
        #expect(view.swarms.first?.contentId == "c\(SwarmView.swarmsKept + 2)")
        // The same request again is one member, not two.
        view.apply(event(.requestReceived, "r12", ["deviceId": "d", "contentId": "c12", "size": 1]))
        #expect(view.swarms.first?.members.count == 1)
    }
}
