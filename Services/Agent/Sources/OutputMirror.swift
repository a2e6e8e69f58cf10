import FerryContent
import FerryProtocol
import Foundation

/// When a `ferry get --output` copy is made of what a download has verified so far. Chunks
/// mostly arrive in order (a chain, a path resumed at the first chunk missing, the origin), so
/// what is verified from the first chunk on is copied while the rest arrives, a batch at a
/// time, and once the content is whole only the remainder is copied before the rename. The
/// client is answered then, rather than after a copy of the whole content: on a loaded device
/// that copy was the last tenth of a second of a crowd's download, and on a disk it takes
/// seconds for a large release. One copy runs at a time per output.
struct OutputSchedule<Answer: Equatable>: Equatable {
    enum State: Equatable {
        /// Chunks below `copied` are in the temporary file; no copy runs.
        case idle(copied: Int)
        /// A copy of `chunks` runs; `then`: the content became whole meanwhile, with the answer.
        case copying(Range<Int>, then: Answer?)
        /// The remainder is being copied and the file put in place: nothing is left to decide.
        case finishing
        /// A copy failed: the output is made whole once the content is, as without a mirror.
        case failed
    }

    enum Action: Equatable {
        case copy(Range<Int>)
        /// Copy from `from` to the last chunk, put the file in place, then answer.
        case finish(from: Int, Answer)
    }

    /// Chunks worth a copy of their own while the download runs.
    let batch: Int
    private(set) var state = State.idle(copied: 0)

    init(batch: Int) {
        self.batch = max(1, batch)
    }

    /// Chunks `0..<prefix` are verified.
    mutating func verified(prefix: Int) -> Action? {
        guard case .idle(let copied) = state, prefix - copied >= batch else { return nil }
        state = .copying(copied..<prefix, then: nil)
        return .copy(copied..<prefix)
    }

    /// The running copy is done.
    mutating func copied() -> Action? {
        guard case .copying(let chunks, let then) = state else { return nil }
        guard let then else {
            state = .idle(copied: chunks.upperBound)
            return nil
        }
        state = .finishing
        return .finish(from: chunks.upperBound, then)
    }

    /// The content is whole; `answer` goes to the client once the file is in place.
    mutating func whole(_ answer: Answer) -> Action? {
        switch state {
        case .idle(let copied):
            state = .finishing
            return .finish(from: copied, answer)
        case .copying(let chunks, _):
            state = .copying(chunks, then: answer)
            return nil
        case .finishing, .failed:
            return nil
        }
    }

    mutating func failed() { state = .failed }

    /// Chunks already copied, or nil while a copy runs or once the schedule is past copying.
    var copiedChunks: Int? {
        if case .idle(let copied) = state { copied } else { nil }
    }
}

/// One waiting client's output being mirrored while its download runs: where the copy goes
/// (a temporary name beside the output until it is whole) and what it is copied from.
final class OutputMirror {
    let client: Data
    let output: String
    let temporary: String
    /// The download's file as it grows. A descriptor, not a name: finishing the download
    /// renames the file and closes its writer, and this still reads it.
    let source: FileBytes
    let layout: ContentSummary
    var schedule: OutputSchedule<OutputAnswer>

    init(client: Data, output: String, partial: PartialContent) throws {
        self.client = client
        self.output = output
        temporary = temporaryURL(beside: URL(fileURLWithPath: output)).path
        source = try partial.openForReading()
        layout = partial.manifest.summary
        schedule = OutputSchedule(batch: max(1, (4 << 20) / Int(layout.chunkSize)))
    }

    /// The bytes `chunks` span.
    func bytes(_ chunks: Range<Int>) -> (offset: UInt64, count: UInt64) {
        let start = UInt64(chunks.lowerBound) * UInt64(layout.chunkSize)
        let end = min(layout.size, UInt64(chunks.upperBound) * UInt64(layout.chunkSize))
        return (start, end > start ? end - start : 0)
    }

    var chunkCount: Int { layout.chunkCount }

    /// Copies `span` of the download's file into the temporary file, at the same offset. Runs
    /// on side work, so it takes what it needs rather than the mirror.
    static func copy(_ span: (offset: UInt64, count: UInt64), from source: FileBytes, into temporary: String) throws {
        let target = try FileBytes(writingAt: temporary)
        defer { target.close() }
        try target.copy(from: source, at: span.offset, count: span.count)
    }
}

/// What a client is told once its output is in place.
struct OutputAnswer: Equatable {
    let result: GetResult
    /// The content's own file, for a copy the ordinary way should the mirror's fail.
    let path: String
}
