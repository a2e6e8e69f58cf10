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
        /// Sending `want`, at range `range`, chunk `chunk`, packet `packet` of that chunk.
        case sending(range: Int, chunk: Int, packet: Int)
        case finished(SessionOutcome, reason: String?)
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
        phase = .sending(range: 0, chunk: want.first?.start ?? 0, packet: 0)
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
    /// (`OnwardPackets`, or its chunk verified), in the order wanted, and waits at the first it
    /// lacks.
    func next(holding held: (Int, Int) -> Bool) -> Next? {
        guard case .sending(let range, let chunk, let packet) = phase, range < want.count, credit.canSend, held(chunk, packet) else { return nil }
        return Next(chunk: chunk, index: packet, sequence: credit.nextSequence, length: layout.packetLength(chunk: chunk, index: packet),
                    offset: layout.packetOffset(chunk: chunk, index: packet))
    }

    /// The packet `next` named went: its sequence number is spent, and the position moves on.
    mutating func sent() {
        guard case .sending(var range, var chunk, var packet) = phase else { return }
        _ = credit.take()
        packet += 1
        if packet >= layout.packetCount(inChunk: chunk) {
            packet = 0
            chunk += 1
            if chunk >= want[range].end {
                range += 1
                if range < want.count { chunk = want[range].start }
            }
        }
        phase = .sending(range: range, chunk: chunk, packet: packet)
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
