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
        let effects = matching.pipeline(try match("r1", from: "a"), from: nil)
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
        for name in ["b", "c"] { _ = single.announcement(try announced(announcement(name, holds: [contentA])), from: nil) }
        let one = try #require(try decision(single.pipeline(try match("r1", from: "a"), from: nil)))
        #expect(one.stripes == nil && one.sources == [device("b"), device("c")])
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
