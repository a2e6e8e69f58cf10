import FerryContent
import Foundation
import Synchronization

/// The temporary files this agent makes beside `ferry get --output` targets, written down in
/// its data directory before each is made, so the next start removes those a killed agent left.
/// The output directory may be shared with other agents and people, so an agent never sweeps
/// it by name: it removes only what it wrote down itself, and only a name it could have made
/// (`temporaryURL`: `.NAME.XXXXXXXX.partial`) under its output directory.
final class OutputJournal: Sendable {
    let path: URL
    let outputs: OutputDirectory
    private let open: Mutex<Set<String>>

    init(path: URL, outputs: OutputDirectory) {
        self.path = path
        self.outputs = outputs
        open = Mutex([])
    }

    /// At start: removes every temporary output an earlier run wrote down and did not finish
    /// (renamed into place, or removed), and forgets them; returns those it removed.
    func sweep() -> [String] {
        let listed = (try? String(contentsOf: path, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        var removed: [String] = []
        for temporary in listed where Self.isTemporary(temporary, under: outputs) && FileManager.default.fileExists(atPath: temporary) {
            if (try? FileManager.default.removeItem(atPath: temporary)) != nil { removed.append(temporary) }
        }
        open.withLock { entries in
            entries.removeAll()
            save(entries)
        }
        return removed
    }

    /// A temporary output about to be made.
    func begin(_ temporary: String) {
        open.withLock { entries in
            entries.insert(temporary)
            save(entries)
        }
    }

    /// A temporary output renamed into place or removed.
    func end(_ temporary: String) {
        open.withLock { entries in
            if entries.remove(temporary) != nil { save(entries) }
        }
    }

    /// Removes a temporary output and forgets it.
    func discard(_ temporary: String) {
        unlink(temporary)
        end(temporary)
    }

    /// Copies `file` to `output` through a temporary name beside it (`atomicCopy`), written
    /// down while it exists.
    func copy(from file: String, to output: String) throws {
        let temporary = temporaryURL(beside: URL(fileURLWithPath: output))
        begin(temporary.path)
        defer { end(temporary.path) }
        try atomicCopy(from: URL(fileURLWithPath: file), to: URL(fileURLWithPath: output), through: temporary)
    }

    /// Under the lock, so the file is always the latest list (the loop and side work both write).
    private func save(_ entries: Set<String>) {
        // Written whole through a new file, so a kill mid-write leaves the old list or the new.
        let text = entries.sorted().map { $0 + "\n" }.joined()
        try? Data(text.utf8).write(to: path, options: .atomic)
    }

    /// Whether `path` is a name `temporaryURL` makes, in the output directory or below it.
    static func isTemporary(_ path: String, under outputs: OutputDirectory) -> Bool {
        guard case .success(let resolved) = outputs.resolve(path), resolved.path == URL(fileURLWithPath: path).standardizedFileURL.path else {
            return false
        }
        return isTemporaryName(resolved.lastPathComponent)
    }
}
