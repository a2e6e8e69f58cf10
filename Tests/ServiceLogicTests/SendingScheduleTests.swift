@testable import FerryAgent
import FerryProtocol
import Foundation
import Testing

/// The sending device's decisions, in process: what it sends, in which order, never past the
/// credit, and whether it sends a session at all.
@Suite struct SendingScheduleDecisions {
    /// Three chunks of two packets each, the last packet of the last chunk short.
    let layout = ContentSummary(contentId: try! ContentID(String(repeating: "e", count: 64)), size: 5 * 1024 + 100, chunkSize: 2048,
                                packetSize: 1024)

    func sendAll(_ schedule: inout SendingSchedule) -> [SendingSchedule.Next] {
        var sent: [SendingSchedule.Next] = []
        while let next = schedule.next {
            sent.append(next)
            schedule.sent()
        }
        return sent
    }

    @Test func itSendsTheWantedChunksInOrderAndNeverPastTheCredit() throws {
        var schedule = SendingSchedule(layout: layout, window: 4)
        schedule.granted(upTo: 4)
        #expect(schedule.next == nil, "nothing before the receiver attaches")
        try schedule.attached(role: .receiver, want: [ChunkRange(0, 1), ChunkRange(2, 3)])
        let first = sendAll(&schedule)
        #expect(first.map { "\($0.chunk).\($0.index)" } == ["0.0", "0.1", "2.0", "2.1"])
        #expect(first.map(\.sequence) == [0, 1, 2, 3])
        #expect(first.map(\.length) == [1024, 1024, 1024, 100] && first[2].offset == 4096 && first[3].offset == 5120)
        schedule.granted(upTo: 10)
        #expect(schedule.next == nil, "everything wanted went")
        #expect(schedule.finished == nil)
    }

    @Test func creditHoldsItBackAndASecondAttachChangesNothing() throws {
        var schedule = SendingSchedule(layout: layout, window: 2)
        try schedule.attached(role: .receiver, want: [ChunkRange(1, 3)])
        #expect(schedule.next == nil, "no credit yet")
        schedule.granted(upTo: 2)
        #expect(sendAll(&schedule).map(\.chunk) == [1, 1])
        try schedule.attached(role: .receiver, want: [ChunkRange(0, 1)])
        schedule.granted(upTo: 1)
        #expect(schedule.next == nil, "a lower grant takes nothing back and gives nothing")
        schedule.granted(upTo: 4)
        #expect(sendAll(&schedule).map { "\($0.chunk).\($0.index)" } == ["2.0", "2.1"])
        #expect(throws: WireError.self) {
            var other = SendingSchedule(layout: layout, window: 2)
            try other.attached(role: .receiver, want: [ChunkRange(2, 4)])
        }
    }

    @Test func doneOrAbortEndsItAndTheFirstEndHolds() throws {
        var schedule = SendingSchedule(layout: layout, window: 4)
        try schedule.attached(role: .receiver, want: [ChunkRange(0, 3)])
        schedule.granted(upTo: 4)
        schedule.ended(abort: "withdrawn")
        #expect(schedule.next == nil)
        schedule.ended(abort: nil)
        #expect(schedule.finished?.outcome == .cancelled && schedule.finished?.reason == "withdrawn")
        var done = SendingSchedule(layout: layout, window: 4)
        done.ended(abort: nil)
        #expect(done.finished?.outcome == .completed)
    }

    @Test func aSessionIsSentOnlyWhenServingHoldingWithTheKeyInTheVerifiedLayout() throws {
        let open = SessionOpen(sessionId: SessionID(1), requestId: try RequestID("r"), traceId: "t", role: .sender, content: layout,
                               address: "a", peerAddress: "b", peerDevice: try DeviceID("d"), relayEndpoint: "tcp://r:1", relays: [], window: 4)
        let layout = self.layout
        func decide(serving: Bool = true, held: Bool = true, hasKey: Bool = true, verified: ContentSummary? = nil) -> SendingAdmission {
            SendingAdmission.decide(open, serving: serving, held: held, hasKey: hasKey, verified: verified ?? layout)
        }
        #expect(decide() == .send)
        #expect(decide(serving: false) == .refuse(.notServing))
        #expect(decide(held: false) == .refuse(.notHeld))
        #expect(decide(hasKey: false) == .refuse(.noContentKey))
        let other = ContentSummary(contentId: layout.contentId, size: layout.size, chunkSize: 4096, packetSize: 1024)
        #expect(decide(verified: other) == .layoutMismatch)
        #expect(SendingAdmission.decide(open, serving: true, held: true, hasKey: true, verified: nil) == .layoutMismatch, "no manifest to check it by")
    }
}
