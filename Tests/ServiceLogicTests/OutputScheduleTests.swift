@testable import FerryAgent
import FerryContent
import Foundation
import Testing

/// When a `ferry get --output` copy is made while the download runs: batches of what is
/// verified in order, one at a time, and at the end only the rest.
@Suite struct OutputScheduleDecisions {
    @Test func copiesEachBatchOfVerifiedChunksOnceAndOnlyTheRestAtTheEnd() {
        var schedule = OutputSchedule<String>(batch: 4)
        #expect(schedule.verified(prefix: 3) == nil)
        #expect(schedule.verified(prefix: 5) == .copy(0..<5))
        // One copy at a time: what is verified meanwhile waits for it.
        #expect(schedule.verified(prefix: 12) == nil)
        #expect(schedule.copied() == nil)
        #expect(schedule.copiedChunks == 5)
        #expect(schedule.verified(prefix: 12) == .copy(5..<12))
        #expect(schedule.copied() == nil)
        #expect(schedule.verified(prefix: 14) == nil)
        #expect(schedule.whole("answer") == .finish(from: 12, "answer"))
        #expect(schedule.state == .finishing)
        #expect(schedule.copied() == nil && schedule.verified(prefix: 40) == nil && schedule.whole("again") == nil)
    }

    @Test func wholeWhileABatchIsCopiedFinishesWhenItEnds() {
        var schedule = OutputSchedule<String>(batch: 2)
        #expect(schedule.verified(prefix: 6) == .copy(0..<6))
        #expect(schedule.whole("answer") == nil)
        #expect(schedule.copiedChunks == nil)
        #expect(schedule.copied() == .finish(from: 6, "answer"))
    }

    @Test func aFailedCopyLeavesTheOutputToTheEnd() {
        var schedule = OutputSchedule<String>(batch: 1)
        #expect(schedule.verified(prefix: 1) == .copy(0..<1))
        schedule.failed()
        #expect(schedule.copied() == nil && schedule.verified(prefix: 9) == nil && schedule.whole("answer") == nil)
        #expect(schedule.state == .failed)
    }

    /// The copy the schedule's batches are made with: at the same offsets, whatever the batch.
    @Test func fileBytesCopiesARangeToTheSameOffset() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("output-copy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let bytes = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) })
        try bytes.write(to: directory.appendingPathComponent("source"))
        let source = try FileBytes(readingAt: directory.appendingPathComponent("source").path)
        let target = try FileBytes(writingAt: directory.appendingPathComponent("target").path)
        try target.copy(from: source, at: 1 << 20, count: 2 << 20)
        try target.copy(from: source, at: 0, count: 1 << 20)
        #expect(try Data(contentsOf: directory.appendingPathComponent("target")) == bytes)
        #expect(throws: ContentError.self) { try target.copy(from: source, at: 3 << 20, count: 1) }
    }
}

/// A killed agent's temporary outputs: the next start removes those it wrote down, and only
/// names it could have made under its output directory, whatever the journal says.
@Suite struct OutputJournalSweep {
    @Test func aStartRemovesOnlyTheTemporaryOutputsItWroteDown() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let outputs = try OutputDirectory(root.appendingPathComponent("out").path)
        let data = root.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: outputs.root.appendingPathComponent("sub"), withIntermediateDirectories: true)
        func make(_ url: URL) throws -> String {
            try Data("x".utf8).write(to: url)
            return url.path
        }
        let mine = try make(temporaryURL(beside: outputs.root.appendingPathComponent("release.bin")))
        let deeper = try make(temporaryURL(beside: outputs.root.appendingPathComponent("sub/other.bin")))
        let finished = temporaryURL(beside: outputs.root.appendingPathComponent("done.bin")).path   // renamed: gone
        let anothers = try make(temporaryURL(beside: outputs.root.appendingPathComponent("theirs.bin")))
        let notATemporary = try make(outputs.root.appendingPathComponent("keep.bin"))
        let outside = try make(temporaryURL(beside: root.appendingPathComponent("elsewhere.bin")))

        let journal = OutputJournal(path: data.appendingPathComponent("outputs-in-progress"), outputs: outputs)
        for path in [mine, deeper, finished] { journal.begin(path) }
        journal.end(finished)
        // What a killed run leaves: the list as it was, with two entries nobody's agent wrote.
        let list = try String(contentsOf: journal.path, encoding: .utf8)
        #expect(list == [deeper, mine].sorted().map { $0 + "\n" }.joined())
        try Data((list + notATemporary + "\n" + outside + "\n" + outputs.root.path + "/../" + URL(fileURLWithPath: outside).lastPathComponent + "\n").utf8)
            .write(to: journal.path)

        let restarted = OutputJournal(path: journal.path, outputs: outputs)
        #expect(restarted.sweep().sorted() == [deeper, mine].sorted())
        for gone in [mine, deeper] { #expect(!FileManager.default.fileExists(atPath: gone)) }
        for kept in [anothers, notATemporary, outside] { #expect(FileManager.default.fileExists(atPath: kept), "\(kept) was removed") }
        #expect(try String(contentsOf: journal.path, encoding: .utf8) == "")
        #expect(restarted.sweep() == [])
    }
}
