import FerryProtocol
import FerryTrust
import Synchronization

/// What worker threads tell the agent's loop. Workers never touch the loop's sockets or
/// download state; they post here and the loop applies it on its own thread.
enum AgentNote: Sendable {
    case manifestReady(RequestID, Manifest, ContentKey)
    /// The request could not be placed. `fatal`: the content doesn't exist or the request is
    /// refused, so there is nothing to fall back to.
    case requestFailed(RequestID, reason: String, fatal: Bool)
    case originChunks(RequestID, chunks: [Int], bytes: UInt64)
    case originFinished(RequestID, error: String?)
}

final class Mailbox: Sendable {
    private let notes = Mutex<[AgentNote]>([])

    func post(_ note: AgentNote) { notes.withLock { $0.append(note) } }

    func drain() -> [AgentNote] {
        notes.withLock { notes in
            defer { notes.removeAll(keepingCapacity: true) }
            return notes
        }
    }
}
