import FerryProtocol
import FerryTrust
import Foundation
import Synchronization
import ZeroMQ

/// What worker threads tell the agent's loop. Workers never touch the loop's sockets or
/// download state; they post here and the loop applies it on its own thread.
enum AgentNote: Sendable {
    case manifestReady(RequestID, Manifest, ContentKey)
    /// The request could not be placed. `fatal`: the content doesn't exist or the request is
    /// refused, so there is nothing to fall back to.
    case requestFailed(RequestID, reason: String, fatal: Bool)
    case originChunks(RequestID, chunks: [Int], bytes: UInt64)
    /// The origin's fetch of all that was missing, or of one stripe, ended.
    case originFinished(RequestID, Stripe?, error: String?)
    /// The verified file is under its final name (`path`), or could not be put there (`error`).
    case finalized(RequestID, path: String?, error: String?)
    /// A `ferry get`'s answer, its copy made.
    case answered(client: Data, GetResult)
    /// A copy into an output's temporary file ended (see `OutputMirror`).
    case mirrored(RequestID, temporary: String, error: String?)
}

/// Where worker threads leave notes for the agent's loop. Each post also pushes a byte down an
/// inproc socket the loop polls (zguide's mtrelay pattern), so a note is applied the moment it
/// is posted rather than at the loop's next timed look.
final class Mailbox: @unchecked Sendable {
    static let endpoint = "inproc://agent-mailbox"
    private let state: Mutex<(notes: [AgentNote], wake: Socket)>
    /// The loop's end: readable whenever notes wait. Only the loop's thread touches it, which
    /// is why the mailbox as a whole may be shared (`@unchecked`): workers use `post` alone.
    let doorbell: Socket

    /// Binds the loop's end in `context`, then connects the workers' end to it.
    init(context: Context) throws {
        doorbell = try context.socket(.pull)
        try doorbell.bind(Self.endpoint)
        let wake = try context.socket(.push)
        try wake.connect(Self.endpoint)
        state = Mutex((notes: [], wake: wake))
    }

    /// From any thread; the wake socket is used only under the lock.
    func post(_ note: AgentNote) {
        state.withLock { state in
            state.notes.append(note)
            // A full queue already holds a wake the loop hasn't read: nothing is lost.
            _ = try? state.wake.send([Data()], dontWait: true)
        }
    }

    /// On the loop's thread, when `doorbell` is readable (or at any pass).
    func drain() -> [AgentNote] {
        while (try? doorbell.receive(dontWait: true)) != nil {}
        return state.withLock { state in
            defer { state.notes.removeAll(keepingCapacity: true) }
            return state.notes
        }
    }
}
