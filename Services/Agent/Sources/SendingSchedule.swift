import FerryLink
import FerryProtocol
import Foundation

/// Step (h) at the sending device: which packet goes next, whether credit allows it, and when
/// the session is over. It reads no file and owns no socket: `SendingLink` asks it for the
/// next packet, seals and sends it, and says when it went. A value, allocation-free per packet.
struct SendingSchedule: Equatable {
    /// Where the session is. Until the receiver attaches nothing is sent; after a `done` or an
    /// abort nothing more is.
    enum Phase: Equatable {
        case awaitingAttach
        /// Sending `want` in order, at the cursor.
        case sending(Cursor)
        /// The packet at the cursor is not here yet (a device still getting the content), so a
        /// chunk further on that is verified here goes meanwhile, whole: chunk `chunk`, at packet
        /// `packet`; then back to `cursor`.
        case ahead(chunk: Int, packet: Int, cursor: Cursor)
        case finished(SessionOutcome, reason: String?)
    }

    /// A place in `want`: range `range`, chunk `chunk`, packet `packet` of that chunk.
    struct Cursor: Equatable {
        var range: Int
        var chunk: Int
        var packet: Int
    }

    /// One packet to send.
    struct Next: Equatable {
        let chunk: Int
        let index: Int
        let sequence: UInt32
        let length: Int
        /// Where its plaintext starts in the content.
        let offset: UInt64
    }

    let layout: ContentSummary
    private(set) var phase = Phase.awaitingAttach
    /// What the receiver asked for: set once, by its attach. Kept outside `phase`, so moving on
    /// a packet touches no array.
    private(set) var want: [ChunkRange] = []
    /// Chunks sent ahead of the cursor, which it skips when it gets there.
    private(set) var sentAhead: Set<Int> = []
    private(set) var credit: CreditWindow

    init(layout: ContentSummary, window: Int) {
        self.layout = layout
        credit = CreditWindow(window: window)
    }

    /// The receiver said which chunks it wants; a second attach changes nothing.
    mutating func attached(role: SessionRole, want: [ChunkRange]) throws {
        guard role == .receiver, phase == .awaitingAttach else { return }
        guard want.allSatisfy({ $0.start >= 0 && $0.start < $0.end && $0.end <= layout.chunkCount }) else {
            throw WireError.invalid("want-list names chunks the content doesn't have")
        }
        self.want = want
        phase = .sending(Cursor(range: 0, chunk: want.first?.start ?? 0, packet: 0))
    }

    mutating func granted(upTo limit: UInt32) { credit.grant(upTo: limit) }

    /// A `done` from the receiver (`nil`), or its abort with the reason.
    mutating func ended(abort reason: String?) {
        if case .finished = phase { return }
        phase = reason.map { .finished(.cancelled, reason: $0) } ?? .finished(.completed, reason: nil)
    }

    var finished: (outcome: SessionOutcome, reason: String?)? {
        if case .finished(let outcome, let reason) = phase { (outcome, reason) } else { nil }
    }

    /// The next packet, when there is one and credit allows it.
    var next: Next? { next { _, _ in true } }

    /// The next packet, when there is one, credit allows it and `held(chunk, packet)` says this
    /// device has it: a device still getting the content sends each packet once it has it
    /// (`OnwardPackets`, or its chunk verified), in the order wanted. Where it lacks the packet
    /// at the cursor, it sends meanwhile the first wanted chunk further on that `verified` says
    /// is here whole: a device getting stripes from several sources at once has chunks far
    /// ahead, and its followers get them at the pace they arrive, not one stripe's. Without
    /// `verified` (or with nothing ahead) it waits at the cursor.
    func next(holding held: (Int, Int) -> Bool, verified: ((Int) -> Bool)? = nil) -> Next? {
        guard credit.canSend else { return nil }
        switch phase {
        case .sending(let cursor):
            guard cursor.range < want.count else { return nil }
            if held(cursor.chunk, cursor.packet) { return packet(cursor.chunk, cursor.packet) }
            return verified.flatMap { firstAhead(of: cursor, verified: $0) }.map { packet($0, 0) }
        case .ahead(let chunk, let packet, _):
            return self.packet(chunk, packet)
        case .awaitingAttach, .finished:
            return nil
        }
    }

    private func packet(_ chunk: Int, _ index: Int) -> Next {
        Next(chunk: chunk, index: index, sequence: credit.nextSequence, length: layout.packetLength(chunk: chunk, index: index),
             offset: layout.packetOffset(chunk: chunk, index: index))
    }

    /// The first wanted chunk after the cursor's, not sent yet, that is here whole.
    private func firstAhead(of cursor: Cursor, verified: (Int) -> Bool) -> Int? {
        for range in cursor.range..<want.count {
            let start = range == cursor.range ? cursor.chunk + 1 : want[range].start
            for chunk in start..<max(start, want[range].end) where !sentAhead.contains(chunk) && verified(chunk) { return chunk }
        }
        return nil
    }

    /// The packet `next` named went: its sequence number is spent, and the position moves on.
    mutating func sent(_ next: Next) {
        _ = credit.take()
        switch phase {
        case .sending(var cursor) where next.chunk == cursor.chunk && next.index == cursor.packet:
            advance(&cursor)
            phase = .sending(cursor)
        case .sending(let cursor):
            // The first packet of a chunk from further on.
            stepAhead(chunk: next.chunk, sent: 0, cursor: cursor)
        case .ahead(let chunk, let packet, let cursor):
            stepAhead(chunk: chunk, sent: packet, cursor: cursor)
        case .awaitingAttach, .finished:
            break
        }
    }

    private mutating func stepAhead(chunk: Int, sent packet: Int, cursor: Cursor) {
        guard packet + 1 >= layout.packetCount(inChunk: chunk) else { return phase = .ahead(chunk: chunk, packet: packet + 1, cursor: cursor) }
        sentAhead.insert(chunk)
        phase = .sending(cursor)
    }

    /// On to the next packet wanted, past the chunks already sent ahead.
    private func advance(_ cursor: inout Cursor) {
        cursor.packet += 1
        guard cursor.packet >= layout.packetCount(inChunk: cursor.chunk) else { return }
        cursor.packet = 0
        repeat {
            cursor.chunk += 1
            if cursor.chunk >= want[cursor.range].end {
                cursor.range += 1
                guard cursor.range < want.count else { return }
                cursor.chunk = want[cursor.range].start
            }
        } while sentAhead.contains(cursor.chunk)
    }
}

/// Whether this device sends a session the broker opened on it, and if not, why.
enum SendingAdmission: Equatable {
    case send
    /// Refused with a reason the broker is told.
    case refuse(FinishReason)
    /// The session's content layout isn't the verified manifest's (`Downloads.refuseLayout`).
    case layoutMismatch

    /// `serving`: the device offers uploads; `held`, `hasKey`: it holds the content (whole, or
    /// is getting it and sends chunks as they are verified) and its
    /// key (without the key it can't be sent sealed, and nothing goes through a relay in the
    /// clear); `verified`: the layout of the manifest it holds.
    static func decide(_ open: SessionOpen, serving: Bool, held: Bool, hasKey: Bool, verified: ContentSummary?) -> SendingAdmission {
        guard serving else { return .refuse(.notServing) }
        guard held else { return .refuse(.notHeld) }
        guard hasKey else { return .refuse(.noContentKey) }
        guard let verified, open.content == verified else { return .layoutMismatch }
        return .send
    }
}
