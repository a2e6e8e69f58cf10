import FerryProtocol
import Foundation
import Testing

@Suite struct FleetControlsOnRealDevices {
    /// A holder capped at 8 MiB/s sends no faster; a device with a 20 MiB store evicts the
    /// content it used least recently to fit a third 8 MiB download, and stops announcing it.
    @Test func anUploadCapAndAStorageQuota() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let holder = try stack.startAgent("h", extra: ["--upload-rate", "8M"])
        let device = try stack.startAgent("d", extra: ["--store-quota", "20M", "--serving", "false"])
        let contents = try (0..<3).map { try stack.publish(try stack.randomFile("c\($0).bin", mebibytes: 8)) }
        for content in contents {
            #expect(try stack.get(content, via: holder).ok)
            try waitForHoldings(stack, holder, hold: content)
        }

        var peerSeconds = 0.0
        for content in contents {
            let result = try stack.get(content, via: device)
            #expect(result.ok && result.sources.map(\.kind) == [.peer], "\(result.error ?? "")")
            peerSeconds += result.seconds
        }
        // 24 MiB at 8 MiB/s is 3 s; the cap's burst is 1 MiB a session start at most.
        #expect(peerSeconds >= 2.4, "24 MiB from a holder capped at 8 MiB/s took only \(peerSeconds) s")

        let evicted = try stack.events.waitFor(topic: "content.evicted")
        #expect(evicted.data["contentId"]?.stringValue == contents[0].hex)
        let holdings = try stack.status(device.control).counters["holdings"].map { "\($0)" } ?? ""
        #expect(!holdings.contains(contents[0].hex) && holdings.contains(contents[1].hex) && holdings.contains(contents[2].hex))
        #expect(!FileManager.default.fileExists(atPath: device.dataDirectory.appendingPathComponent("store/\(contents[0].hex)").path))
        print("upload cap 8 MiB/s: 24 MiB took \(String(format: "%.2f", peerSeconds)) s")
    }
}
