import FerryProtocol
import FerryTrust
import Foundation

/// A device's content on disk: `<root>/<content id>/manifest.json` and `data` for what it
/// holds, plus `data.partial` and `verified` while a download runs. Only `PartialContent.finish`
/// puts bytes under the name `data`, and only once every chunk is verified, so a crash never
/// leaves a partial or wrong file where a complete one is expected.
public final class ContentStore: @unchecked Sendable {
    public let root: URL

    public init(root: URL) throws {
        self.root = root
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    func directory(_ id: ContentID) -> URL { root.appendingPathComponent(id.hex, isDirectory: true) }
    public func dataURL(_ id: ContentID) -> URL { directory(id).appendingPathComponent("data") }
    func manifestURL(_ id: ContentID) -> URL { directory(id).appendingPathComponent("manifest.json") }

    public func holds(_ id: ContentID) -> Bool { FileManager.default.fileExists(atPath: dataURL(id).path) }

    /// Content held in full, the list an agent announces.
    public func holdings() -> [ContentID] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.compactMap { try? ContentID($0) }.filter(holds).sorted()
    }

    /// The verified manifest of held or partially held content.
    public func manifest(_ id: ContentID) -> Manifest? {
        guard let data = try? Data(contentsOf: manifestURL(id)), let manifest = try? ManifestCodec.decode(data),
              manifest.contentId == id else { return nil }
        return manifest
    }

    /// Moves a complete file (on the same file system) into the store: no copy of large content.
    public func adoptFile(at url: URL, manifest: Manifest) throws {
        try FileManager.default.createDirectory(at: directory(manifest.contentId), withIntermediateDirectories: true)
        try ManifestCodec.encode(manifest).write(to: manifestURL(manifest.contentId), options: .atomic)
        guard rename(url.path, dataURL(manifest.contentId).path) == 0 else {
            throw ContentError.io("cannot move \(url.path) into the store: \(String(cString: strerror(errno)))")
        }
    }

    public func openForReading(_ id: ContentID) throws -> FileBytes {
        guard holds(id) else { throw ContentError.notHeld(id) }
        return try FileBytes(readingAt: dataURL(id).path)
    }

    /// Starts or resumes a download: chunks verified by an earlier run are kept.
    public func beginDownload(_ manifest: Manifest) throws -> PartialContent {
        try FileManager.default.createDirectory(at: directory(manifest.contentId), withIntermediateDirectories: true)
        try ManifestCodec.encode(manifest).write(to: manifestURL(manifest.contentId), options: .atomic)
        return try PartialContent(manifest: manifest, directory: directory(manifest.contentId), finalURL: dataURL(manifest.contentId))
    }

    /// The key the content travels under between devices, kept beside it (mode 0600) so this
    /// device can seal what it sends; it goes when the content does.
    public func saveContentKey(_ key: ContentKey, for id: ContentID) throws {
        let url = directory(id).appendingPathComponent("content.key")
        try? FileManager.default.removeItem(at: url)
        guard FileManager.default.createFile(atPath: url.path, contents: key.raw, attributes: [.posixPermissions: 0o600]) else {
            throw ContentError.io("cannot write the content key to \(url.path)")
        }
    }

    public func contentKey(_ id: ContentID) -> ContentKey? {
        (try? Data(contentsOf: directory(id).appendingPathComponent("content.key"))).flatMap { try? ContentKey(raw: $0) }
    }

    public func remove(_ id: ContentID) {
        try? FileManager.default.removeItem(at: directory(id))
    }

    /// Marks content as just used (served, got, finished), for least-recently-used eviction.
    public func touch(_ id: ContentID) {
        let mark = directory(id).appendingPathComponent("used")
        _ = FileManager.default.createFile(atPath: mark.path, contents: nil)
    }

    /// Held content with its size and when it was last used.
    public func usage() -> [StoreEviction.Entry] {
        holdings().compactMap { id in
            guard let size = try? FileManager.default.attributesOfItem(atPath: dataURL(id).path)[.size] as? NSNumber else { return nil }
            let marks = [directory(id).appendingPathComponent("used"), dataURL(id)]
            let used = marks.lazy.compactMap { try? FileManager.default.attributesOfItem(atPath: $0.path)[.modificationDate] as? Date }.first
            return StoreEviction.Entry(id: id, bytes: size.uint64Value, lastUsed: used ?? .distantPast)
        }
    }
}

/// One download in progress: the partial file and which chunks in it are verified.
public final class PartialContent: @unchecked Sendable {
    public let manifest: Manifest
    public let file: FileBytes
    let bitmapURL: URL
    let partialURL: URL
    let finalURL: URL
    public private(set) var verified: [Bool]

    init(manifest: Manifest, directory: URL, finalURL: URL) throws {
        self.manifest = manifest
        self.finalURL = finalURL
        partialURL = directory.appendingPathComponent("data.partial")
        bitmapURL = directory.appendingPathComponent("verified")
        file = try FileBytes(writingAt: partialURL.path)
        try file.truncate(to: manifest.size)
        let count = manifest.summary.chunkCount
        if let saved = try? Data(contentsOf: bitmapURL), saved.count == count {
            verified = saved.map { $0 == 1 }
        } else {
            verified = Array(repeating: false, count: count)
        }
    }

    public var missing: [Int] { verified.indices.filter { !verified[$0] } }
    public var verifiedCount: Int { verified.reduce(0) { $0 + ($1 ? 1 : 0) } }
    public func isVerified(_ chunk: Int) -> Bool { verified.indices.contains(chunk) && verified[chunk] }

    /// A second handle on the bytes, for sending verified chunks while the download runs; it
    /// stays valid when `finish` renames the file.
    public func openForReading() throws -> FileBytes {
        try FileBytes(readingAt: FileManager.default.fileExists(atPath: partialURL.path) ? partialURL.path : finalURL.path)
    }
    public var verifiedBytes: UInt64 {
        verified.indices.reduce(0) { $0 + ($1 < verified.count && verified[$1] ? UInt64(manifest.summary.chunkLength($1)) : 0) }
    }
    public var isComplete: Bool { !verified.contains(false) }

    /// Writes a chunk, given in pieces (its packets, in order; or the whole chunk as one), each
    /// where it belongs, only if it hashes to the manifest's value; returns false (writing
    /// nothing) when it does not.
    public func store<Pieces: Collection>(chunk: Int, pieces: Pieces) throws -> Bool where Pieces.Element: DataProtocol & ContiguousBytes {
        guard ManifestCodec.chunkMatches(pieces, chunk: chunk, of: manifest) else { return false }
        var offset = manifest.summary.chunkOffset(chunk)
        for piece in pieces {
            try piece.withUnsafeBytes { try file.write($0, at: offset) }
            offset += UInt64(piece.count)
        }
        verified[chunk] = true
        return true
    }

    /// Records chunks verified and written by another writer (an origin fetch) on this file.
    public func markVerified(_ chunk: Int) { verified[chunk] = true }

    /// Saves which chunks are verified, so a restarted download resumes from them.
    public func saveProgress() {
        try? file.sync()
        try? Data(verified.map { $0 ? 1 : 0 }).write(to: bitmapURL, options: .atomic)
    }

    /// Moves the verified file under its final name. Fails unless every chunk is verified.
    public func finish() throws -> URL {
        guard isComplete else { throw ContentError.io("cannot finish \(manifest.contentId.short)…: \(missing.count) chunks unverified") }
        try file.sync()
        file.close()
        guard rename(partialURL.path, finalURL.path) == 0 else { throw ContentError.io("cannot rename \(partialURL.path)") }
        try? FileManager.default.removeItem(at: bitmapURL)
        return finalURL
    }
}

/// Copies `source` to `destination` through a temporary name in the same directory, so
/// `destination` is either absent, the old file, or the complete new one.
/// `temporary`: the name to copy through, beside `destination`; one that fails is removed.
public func atomicCopy(from source: URL, to destination: URL, through temporary: URL? = nil) throws {
    let temporary = temporary ?? temporaryURL(beside: destination)
    try? FileManager.default.removeItem(at: temporary)
    do {
        try FileManager.default.copyItem(at: source, to: temporary)
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw error
    }
    try moveIntoPlace(temporary, destination)
}

/// A hidden, unique name in `destination`'s directory for a file being made into it.
public func temporaryURL(beside destination: URL) -> URL {
    destination.deletingLastPathComponent().appendingPathComponent(".\(destination.lastPathComponent).\(UUID().uuidString.prefix(8)).partial")
}

/// Whether `name` (a file name, no directory) is one `temporaryURL` makes: `.NAME.XXXXXXXX.partial`.
public func isTemporaryName(_ name: String) -> Bool {
    guard name.hasPrefix("."), name.hasSuffix(".partial") else { return false }
    let stem = name.dropFirst().dropLast(".partial".count)
    guard let dot = stem.lastIndex(of: "."), dot > stem.startIndex else { return false }
    let tag = stem[stem.index(after: dot)...]
    return tag.count == 8 && tag.allSatisfy(\.isHexDigit)
}

/// Renames the finished `temporary` onto `destination` (atomic, both in one directory); on
/// failure `temporary` is removed.
public func moveIntoPlace(_ temporary: URL, _ destination: URL) throws {
    guard rename(temporary.path, destination.path) == 0 else {
        let reason = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: temporary)
        throw ContentError.io("cannot move into \(destination.path): \(reason)")
    }
}
