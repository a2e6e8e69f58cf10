@testable import FerryMatcher
import FerryProtocol
import FerryService
import Foundation
import Testing

/// The matcher's decisions without a socket: announcements in, requests in, what goes to the
/// broker and what is published.
@Suite struct MatchingDecisions {
    func announced(_ announcement: HoldingsAnnouncement) throws -> [Data] {
        [Data(HoldingsAnnouncement.topic.utf8)] + (try announcement.frames())
    }

    func match(_ id: String, from name: String, attempt: Int = 1) throws -> [Data] {
        try MatchRequest(request: request(id, from: name), traceId: "t-\(id)", attempt: attempt).frames()
    }

    func decision(_ effects: [Matching.Effect]) throws -> MatchDecision? {
        for case .toBroker(let frames, _) in effects { return try MatchDecision.decode(frames: frames) }
        return nil
    }

    @Test func aRequestForHeldContentGoesToTheBrokerWithItsHolder() throws {
        var matching = Matching(checkSenders: false)
        let updated = matching.announcement(try announced(announcement("b", holds: [contentA])), from: nil)
        #expect(updated.count == 1 && { if case .publish(let p) = updated[0] { p.topic == .holdingsUpdated } else { false } }())
        let effects = matching.pipeline(try match("r1", from: "a"), from: nil)
        #expect(try decision(effects)?.sources == [device("b")])
        #expect(effects.contains { if case .publish(let p) = $0 { p.topic == .matchFound && p.requestId?.rawValue == "r1" } else { false } })
        // Nobody else holds it: the origin.
        let none = matching.pipeline(try match("r2", from: "b"), from: nil)
        #expect(try decision(none)?.sources.isEmpty == true)
        #expect(matching.counters["matched"] == JSONValue(2))
    }

    /// Holders of the whole content with uploads to spare each send a stripe, up to the
    /// setting's count; a busy holder sends none; with one spare holder, or the setting at 1,
    /// one source serves the request.
    @Test func spareHoldersEachSendAStripe() throws {
        var matching = Matching(checkSenders: false, stripes: 2)
        for name in ["b", "c", "d"] { _ = matching.announcement(try announced(announcement(name, holds: [contentA])), from: nil) }
        _ = matching.announcement(try announced(announcement("e", holds: [contentA], uploads: 1)), from: nil)
        let start = ContinuousClock.now
        #expect(matching.pipeline(try match("r1", from: "a"), from: nil, now: start).isEmpty, "held a moment for the rest of a crowd")
        #expect(matching.nextRelease == start + Matching.crowdWindow && matching.tick(now: start + .milliseconds(50)).isEmpty)
        let effects = matching.tick(now: start + Matching.crowdWindow)
        #expect(matching.nextRelease == nil)
        let striped = try #require(try decision(effects))
        // Each stripe's sources: its holder, then the others listed (three, or as many as stripes).
        #expect(striped.stripes == [[device("b"), device("c"), device("d")], [device("c"), device("b"), device("d")]])
        let found = effects.compactMap { if case .publish(let p) = $0, p.topic == .matchFound { p } else { nil } }.first
        #expect(found?.fields["stripes"] == .array(["b", "c"]))
        // b and c were just given a stripe each: the next request has d alone to spare. The
        // striped device is no swarm member, so nobody is put behind it while it gets stripes.
        #expect(matching.plan.members(of: contentA).isEmpty)
        let next = try #require(try decision(matching.pipeline(try match("r2", from: "f"), from: nil)))
        #expect(next.stripes == nil && next.sources.first == device("d"))
        #expect(matching.plan.members(of: contentA).map(\.device) == [device("f")])
        for name in ["a", "f"] { _ = matching.announcement(try announced(announcement(name, holds: [])), from: nil) }
        let third = try #require(try decision(matching.pipeline(try match("r3", from: "g"), from: nil)))
        #expect(third.sources.first == device("f") && !third.sources.contains(device("a")), "behind f, never behind a: \(third.sources)")

        var single = Matching(checkSenders: false, stripes: 1)
        // With the setting at 1 nothing is held.
        for name in ["b", "c"] { _ = single.announcement(try announced(announcement(name, holds: [contentA])), from: nil) }
        let one = try #require(try decision(single.pipeline(try match("r1", from: "a"), from: nil)))
        #expect(one.stripes == nil && one.sources == [device("b"), device("c")])
    }

    /// Requests that would be striped wait `crowdWindow` for the rest of a crowd, and the spare
    /// holders are shared out among those that came together: two holders and three devices
    /// give the first two a holder each and the third a place behind one of them (a device
    /// taking both would leave the others queued behind a busy holder); four holders and two
    /// devices give each two stripes.
    @Test func aCrowdMeetingAFewHoldersSharesThemOut() throws {
        func decisions(_ effects: [Matching.Effect]) -> [MatchDecision] {
            effects.compactMap { if case .toBroker(let frames, _) = $0 { try? MatchDecision.decode(frames: frames) } else { nil } }
        }
        var few = Matching(checkSenders: false, stripes: 4)
        for name in ["b", "c"] { _ = few.announcement(try announced(announcement(name, holds: [contentA])), from: nil) }
        for name in ["a", "e", "f"] { _ = few.announcement(try announced(announcement(name, holds: [])), from: nil) }
        let start = ContinuousClock.now
        for (id, name) in [("r1", "a"), ("r2", "e"), ("r3", "f")] {
            #expect(few.pipeline(try match(id, from: name), from: nil, now: start + .milliseconds(10)).isEmpty)
        }
        #expect(few.tick(now: start + Matching.crowdWindow).isEmpty, "the wait runs from the first request")
        let crowd = decisions(few.tick(now: start + .milliseconds(10) + Matching.crowdWindow))
        #expect(crowd.map(\.stripes) == [nil, nil, nil])
        #expect(crowd.map { $0.sources.first } == [device("b"), device("c"), device("a")], "\(crowd.map(\.sources))")
        #expect(crowd.map(\.match.request.requestId.rawValue) == ["r1", "r2", "r3"], "in the order they came")

        var many = Matching(checkSenders: false, stripes: 4)
        for name in ["b", "c", "d", "h"] { _ = many.announcement(try announced(announcement(name, holds: [contentA])), from: nil) }
        for (id, name) in [("r1", "a"), ("r2", "e")] { _ = many.pipeline(try match(id, from: name), from: nil, now: start) }
        // A retry is answered at once, even while others wait: the broker holds the first answer.
        #expect(decisions(many.pipeline(try match("r0", from: "g", attempt: 2), from: nil, now: start)).count == 1)
        let pair = decisions(many.tick(now: start + Matching.crowdWindow))
        #expect(pair.map { $0.stripes?.map { $0[0] } } == [[device("b"), device("c")], [device("d"), device("h")]])

        // The status counts what waits; a matcher that stops decides it at once rather than
        // leave it to each device's retry.
        var stopping = Matching(checkSenders: false, stripes: 4)
        for name in ["b", "c"] { _ = stopping.announcement(try announced(announcement(name, holds: [contentA])), from: nil) }
        for (id, name) in [("r1", "a"), ("r2", "e")] { _ = stopping.pipeline(try match(id, from: name), from: nil, now: start) }
        #expect(stopping.counters["held"] == 2)
        #expect(decisions(stopping.releaseAll()).map(\.match.request.requestId.rawValue) == ["r1", "r2"])
        #expect(stopping.counters["held"] == 0 && stopping.releaseAll().isEmpty)
    }

    @Test func withKeysADeviceAnnouncesForItselfAndOnlyTheBrokerReportsSilence() throws {
        var matching = Matching(checkSenders: true)
        #expect(matching.announcement(try announced(announcement("b", holds: [contentA])), from: .device("c")).count == 1)
        #expect(matching.index.holders.isEmpty && matching.dropped == 1)
        _ = matching.announcement(try announced(announcement("b", holds: [contentA])), from: .device("b"))
        #expect(matching.index.holders.count == 1)
        let silent = try SenderSilent(deviceId: device("b"), contentId: contentA, sessionId: SessionID(1), requestId: try RequestID("r")).frames()
        for _ in 0..<SenderSilent.limit { _ = matching.pipeline(silent, from: .device("a")) }
        #expect(!matching.index.isExcluded(device("b")) && matching.dropped == 1 + SenderSilent.limit)
        var excluded = false
        for _ in 0..<SenderSilent.limit {
            excluded = excluded || matching.pipeline(silent, from: .fleet("broker")).contains {
                if case .publish(let p) = $0 { p.topic == .senderExcluded } else { false }
            }
        }
        #expect(excluded && matching.index.isExcluded(device("b")))
    }

    @Test func aRevocationForgetsTheDeviceAndGoesOn() throws {
        var matching = Matching(checkSenders: true)
        _ = matching.announcement(try announced(announcement("b", holds: [contentA])), from: .device("b"))
        let revocation = try DeviceRevocation(deviceId: device("b")).frames()
        let effects = matching.pipeline(revocation, from: .fleet("intake"))
        #expect(effects.contains(.forget(device("b"))) && effects.contains(.toBroker(revocation, requestId: nil)))
        #expect(try decision(matching.pipeline(try match("r1", from: "a"), from: nil))?.sources.isEmpty == true)
    }

    @Test func aDeviceWhoseAnnouncementsStopIsForgottenAtATick() throws {
        var matching = Matching(checkSenders: false)
        let start = ContinuousClock.now
        _ = matching.announcement(try announced(announcement("b", holds: [contentA])), from: nil, now: start)
        #expect(matching.tick(now: start).isEmpty)
        let lost = matching.tick(now: start + .seconds(60))
        #expect(lost == [.publish(Publication(EventData.DeviceLost(deviceId: "b", reason: "announcements-stopped")))])
        if case .publish(let publication) = lost.first { #expect(publication.fields == ["deviceId": "b", "reason": "announcements-stopped"]) }
    }

    @Test func garbageIsCountedAndPublishedOnceInAHundred() throws {
        var matching = Matching(checkSenders: false)
        var published = 0
        for _ in 0..<200 { published += matching.announcement([Data("holdings".utf8), Data("x".utf8)], from: nil).count }
        #expect(matching.dropped == 200 && published == 3)
    }
}
