import FerryLink
import FerryProtocol
import Foundation
import Testing
import ZeroMQ

@Suite struct CreditWindows {
    @Test func senderNeverExceedsTheGrant() {
        var receiver = CreditWindow(window: 8)
        var sender = CreditWindow(window: 8)
        sender.grant(upTo: receiver.initialGrant())
        var sent = 0
        while sender.canSend {
            _ = sender.take()
            sent += 1
        }
        #expect(sent == 8)
        #expect(!sender.canSend)
    }

    @Test func receiverGrantsEveryQuarterWindow() {
        var receiver = CreditWindow(window: 8)
        let grants = [receiver.initialGrant()] + (0..<4).map { _ in receiver.consume() ?? 0 }
        // Every second packet consumed (a quarter of 8) moves the limit on by two.
        #expect(grants == [8, 0, 10, 0, 12])
    }

    @Test func grantsAreCumulativeAndIdempotent() {
        var sender = CreditWindow(window: 4)
        let first = sender.grant(upTo: 4)
        let late = sender.grant(upTo: 3)  // a reordered grant
        let repeated = sender.grant(upTo: 4)
        #expect(first && !late && !repeated)
        #expect(sender.limit == 4)
    }

    @Test func inFlightStaysWithinTheWindowOverALongTransfer() {
        var receiver = CreditWindow(window: 16)
        var sender = CreditWindow(window: 16)
        sender.grant(upTo: receiver.initialGrant())
        var inFlight: [UInt32] = []
        var maxInFlight = 0
        for step in 0..<10_000 {
            if sender.canSend && (step % 3 != 0 || inFlight.isEmpty) {
                inFlight.append(sender.take())
            } else if !inFlight.isEmpty {
                inFlight.removeFirst()
                if let limit = receiver.consume() { sender.grant(upTo: limit) }
            }
            maxInFlight = max(maxInFlight, inFlight.count)
        }
        #expect(maxInFlight <= 16)
        #expect(sender.nextSequence > 1000)
    }
}

@Suite struct LinkFrames {
    let session = SessionID(42)

    @Test func dataRoundTrip() throws {
        let payload = Data(repeating: 7, count: 1000)
        let frames = LinkFrame.messages(PacketHeader(kind: .data, sessionId: session, sequence: 3, chunk: 1, index: 2), payload: payload)
        let frame = try LinkFrame(frames: frames[...])
        #expect(frame.header.length == 1000)
        #expect(frame.payload?.data == payload)
    }

    @Test func attachRoundTrip() throws {
        let attach = LinkAttach(role: .receiver, want: [ChunkRange(0, 4), ChunkRange(6, 9)])
        #expect(try LinkFrame(frames: LinkFrame.attach(session, attach)[...]).decodeAttach() == attach)
    }

    @Test func lengthMismatchAndStrayPayloadAreRefused() throws {
        var header = PacketHeader(kind: .data, sessionId: session)
        header.length = 10
        #expect(throws: WireError.self) { try LinkFrame(frames: [Message(header.encoded), Message(Data(count: 9))][...]) }
        let credit = PacketHeader(kind: .credit, sessionId: session, sequence: 4, length: 3)
        #expect(throws: WireError.self) { try LinkFrame(frames: [Message(credit.encoded), Message(Data(count: 3))][...]) }
        #expect(throws: WireError.self) { try LinkFrame(frames: [Message(Data("garbage".utf8))][...]) }
        #expect(throws: WireError.self) { try LinkFrame(frames: [Message(header.encoded), Message(Data()), Message(Data())][...]) }
    }
}
