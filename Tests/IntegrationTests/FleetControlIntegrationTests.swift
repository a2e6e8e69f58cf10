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

    /// Withdrawn content: the origin stops serving it, every holder drops it, and no server
    /// can start a download of it any more.
    @Test func withdrawingContentAtTheOrigin() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let c = try stack.startAgent("c")
        let content = try stack.publish(try stack.randomFile("x.bin", mebibytes: 4))
        #expect(try stack.get(content, via: b).ok)
        try waitForHoldings(stack, b, hold: content)
        #expect(try stack.get(content, via: a).ok)

        // C's session is brokered but its relay (frozen) never says it is ready: withdrawn
        // now, it is given up at once, never opened when the relay comes back.
        stack.signal("relay-1", SIGSTOP)
        var relayFrozen = true
        defer { if relayFrozen { stack.signal("relay-1", SIGCONT) } }
        let getC = try startGet(stack, content, via: c, output: stack.directory.appendingPathComponent("c.bin"))
        let askedByC = try stack.events.waitFor("C's request") { $0.topic == "request.received" && $0.data["deviceId"]?.stringValue == c.deviceId }
        let requestC = try #require(askedByC.requestId)
        try stack.events.waitFor(topic: "session.brokered", requestId: requestC)

        let withdrawal = try stack.ferry(["withdraw", content.hex, "--origin", stack.originURL])
        #expect(withdrawal.status == 0 && withdrawal.stdout.contains("withdrew"), "\(withdrawal.stderr)")
        try stack.events.waitFor(topic: "content.withdrawn")
        let givenUp = try stack.events.waitFor(topic: "session.failed", requestId: requestC, timeout: 5)
        #expect(givenUp.data["reason"]?.stringValue == "withdrawn")
        stack.signal("relay-1", SIGCONT)
        relayFrozen = false
        getC.waitUntilExit()
        #expect(getC.terminationStatus != 0)
        #expect(!FileManager.default.fileExists(atPath: stack.directory.appendingPathComponent("c.bin").path))
        // The relay made its half when it thawed; no device was told to open its link.
        #expect(stack.events.matching("link.spawned").allSatisfy { $0.requestId != requestC || $0.data["role"]?.stringValue == "relay" },
                "C's session was opened after the withdrawal")
        for device in [a, b] {
            try stack.events.waitFor("\(device.name) to drop the content") {
                $0.topic == "content.evicted" && $0.data["reason"]?.stringValue == "withdrawn" && $0.data["deviceId"]?.stringValue == device.deviceId
            }
            #expect(!FileManager.default.fileExists(atPath: device.dataDirectory.appendingPathComponent("store/\(content.hex)").path))
        }

        // No device gets it now, and a server that still asks is refused at intake.
        let refused = try stack.ferry(["get", content.hex, "--agent", c.control])
        #expect(refused.status == 1 && refused.stderr.contains("unknown-content"))
        let late = DownloadRequest(requestId: try RequestID("after-withdrawal"), deviceId: try DeviceID(c.deviceId),
                                   content: ContentSummary(contentId: content, size: 4 << 20, chunkSize: 262_144, packetSize: 65_536),
                                   server: stack.originURL)
        try stack.pushToIntake(try late.frames())
        let rejected = try stack.events.waitFor(topic: "request.rejected", requestId: "after-withdrawal")
        #expect(rejected.data["reason"]?.stringValue == "withdrawn")
        #expect(stack.events.matching("session.brokered").count == 2)  // A's and C's, before the withdrawal
        #expect(try stack.http("GET", "/v1/content/\(content.hex)/manifest").status == 404)
        #expect(try stack.ferry(["withdraw", content.hex, "--origin", stack.originURL]).status == 1)
    }
}
