import FerryAgent
import FerryContent
import FerryProtocol
import FerryReporter
import FerryService
import FerryLink
import Foundation
import Testing

@Suite struct FleetControls {
    @Test func sizesParse() {
        #expect(ByteSize.parse("0") == 0)
        #expect(ByteSize.parse("1500") == 1500)
        #expect(ByteSize.parse("8M") == 8 << 20)
        #expect(ByteSize.parse("64MiB") == 64 << 20)
        #expect(ByteSize.parse("2G") == 2 << 30)
        #expect(ByteSize.parse("512 K") == 512 << 10)
        #expect(ByteSize.parse("lots") == nil)
        #expect(ByteSize.parse("-5M") == nil)
        #expect(ByteSize.parse("99999999999999G") == nil)
    }

    @Test func theUploadCapAdmitsItsRateAndNoMore() {
        let start = ContinuousClock.now
        var bucket = TokenBucket(bytesPerSecond: 1 << 20, burst: 1 << 20, now: start)
        let burst = bucket.take(1 << 20, now: start)
        let beyondBurst = bucket.take(1, now: start)
        let tooMuch = bucket.take(600_000, now: start + .milliseconds(500))  // half a second refills ~524,288
        let refilled = bucket.take(500_000, now: start + .milliseconds(500))
        #expect(burst && !beyondBurst && !tooMuch && refilled)
        // Over ten simulated seconds, at most rate x time + burst gets through.
        var sent = 0
        var now = start + .seconds(1)
        for _ in 0..<10_000 {
            now += .milliseconds(1)
            if bucket.take(65_536, now: now) { sent += 65_536 }
        }
        #expect(sent <= 11 << 20 && sent >= 9 << 20)
    }

    @Test func evictionTakesTheLeastRecentlyUsedAndSparesWhatIsInUse() throws {
        func id(_ n: Int) throws -> ContentID { try ContentID(String(repeating: String(n), count: 64)) }
        let held = [
            StoreEviction.Entry(id: try id(1), bytes: 10, lastUsed: Date(timeIntervalSince1970: 100)),
            StoreEviction.Entry(id: try id(2), bytes: 10, lastUsed: Date(timeIntervalSince1970: 50)),
            StoreEviction.Entry(id: try id(3), bytes: 10, lastUsed: Date(timeIntervalSince1970: 200)),
        ]
        #expect(StoreEviction.victims(held: held, inUse: 30, needed: 10, quota: 40, protected: []) == [])
        #expect(StoreEviction.victims(held: held, inUse: 30, needed: 10, quota: 30, protected: []) == [try id(2)])
        #expect(StoreEviction.victims(held: held, inUse: 30, needed: 10, quota: 30, protected: [try id(2)]) == [try id(1)])
        #expect(StoreEviction.victims(held: held, inUse: 30, needed: 25, quota: 30, protected: []) == [try id(2), try id(1), try id(3)])
        #expect(StoreEviction.victims(held: held, inUse: 30, needed: 25, quota: 30, protected: [try id(3)]) == nil)
    }

    @Test func retentionForgetsOnlyOldAcknowledgedFulfilments() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ledger = try Ledger(path: path)
        func fulfilment(_ id: String) throws -> Fulfilment {
            Fulfilment(requestId: try RequestID(id), deviceId: try DeviceID("dev"), contentId: try ContentID(String(repeating: "a", count: 64)),
                       size: 1, bytesFromPeers: 0, bytesFromOrigin: 1, sources: [], verification: .originOnly, recordedAt: Timestamp.now())
        }
        for id in ["old", "recent", "unacknowledged"] { #expect(try ledger.insert(fulfilment(id), server: "http://o")) }
        #expect(try ledger.counts() == (3, 3, 0))
        try ledger.acknowledged(try RequestID("old"), at: Date().addingTimeInterval(-40 * 86_400))
        try ledger.acknowledged(try RequestID("recent"), at: Date().addingTimeInterval(-86_400))
        #expect(try ledger.counts() == (3, 1, 0))
        #expect(try ledger.purge(acknowledgedBefore: Date().addingTimeInterval(-30 * 86_400)) == 1)
        #expect(try Set(ledger.entries().map(\.fulfilment.requestId.rawValue)) == ["recent", "unacknowledged"])
    }

    /// Hole 4 of the trust review: pending completions were stored by request id alone, so
    /// another device could replace a waiting completion or have it erased by being rejected.
    @Test func aWaitingCompletionIsKeptPerDeviceAndNeverReplacedOrErasedByAnother() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ledger = try Ledger(path: path)
        let request = try RequestID("req-shared")
        func completion(_ device: String, size: UInt64) throws -> Completion {
            Completion(requestId: request, deviceId: try DeviceID(device), contentId: try ContentID(String(repeating: "a", count: 64)),
                       size: size, sources: [SourceBytes(kind: .origin, bytes: size)], startedAt: Timestamp.now(), finishedAt: Timestamp.now())
        }
        try ledger.park(try completion("dev-victim", size: 10), at: Date(timeIntervalSince1970: 1))
        try ledger.park(try completion("dev-attacker", size: 20), at: Date(timeIntervalSince1970: 2))
        // The victim's own retry doesn't replace what it sent first either.
        try ledger.park(try completion("dev-victim", size: 30), at: Date(timeIntervalSince1970: 3))
        #expect(try ledger.parkedCompletions(request).map { [$0.0.deviceId.rawValue: $0.0.size] } == [["dev-victim": 10], ["dev-attacker": 20]])
        try ledger.unpark(request, device: try DeviceID("dev-attacker"))
        #expect(try ledger.parkedCompletions(request).map(\.0.deviceId.rawValue) == ["dev-victim"])
        let fulfilment = Fulfilment(requestId: request, deviceId: try DeviceID("dev-victim"), contentId: try ContentID(String(repeating: "a", count: 64)),
                                    size: 10, bytesFromPeers: 0, bytesFromOrigin: 10, sources: [], verification: .originOnly, recordedAt: Timestamp.now())
        try ledger.park(try completion("dev-attacker", size: 20), at: Date(timeIntervalSince1970: 4))
        #expect(try ledger.insert(fulfilment, server: "http://o"))
        // Recording the victim's fulfilment forgets only the victim's waiting completion.
        #expect(try ledger.parkedCompletions(request).map(\.0.deviceId.rawValue) == ["dev-attacker"])
    }
}
