import FerryProtocol
import Foundation
import Testing

@Suite struct FlowControlAndMemory {
    /// With the receiving device frozen mid-transfer, the sender stops within one window, the
    /// relay holds no more than that, and the transfer completes once the device resumes.
    @Test func aPausedReceiverStopsTheSenderWithinOneWindow() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let file = try stack.randomFile("content.bin", mebibytes: 128)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: b).ok)
        try waitForHoldings(stack, b, hold: content)

        let output = stack.directory.appendingPathComponent("a.bin")
        let getter = try startGet(stack, content, via: a, output: output)

        // Freeze A as soon as its receiving link exists.
        try stack.events.waitFor("A's receiving link") {
            $0.topic == "link.spawned" && $0.data["role"]?.stringValue == "receiver" && $0.data["deviceId"]?.stringValue == a.deviceId
        }
        stack.signal("agent-a", SIGSTOP)
        defer { stack.signal("agent-a", SIGCONT) }

        // The sender stalls: its count of packets sent stops moving.
        var sent = -1.0, limit = 0.0, window = 0.0
        try waitUntil("the sender to stall", timeout: 20) {
            let before = try sendingLink(stack, b)
            Thread.sleep(forTimeInterval: 1.0)
            let after = try sendingLink(stack, b)
            (sent, limit, window) = after
            return before.sent == after.sent && after.sent > 0
        }
        let totalPackets = Double(128 * 16)
        #expect(sent <= limit, "sent \(sent) packets with credit for \(limit)")
        #expect(sent < totalPackets / 2, "the sender did not stop: \(sent) of \(totalPackets) packets sent")
        let relay = try stack.status(stack.relays[0])
        #expect(stack.counter(relay, "peakQueued") <= window, "the relay queued more than a window")
        let relayMemory = try stack.memory("relay-1")
        #expect(relayMemory.peak < 80 * 1024, "relay peak RSS \(relayMemory.peak) KiB")
        print("paused receiver: sender stalled at \(Int(sent)) packets with credit to \(Int(limit)) (window \(Int(window))); relay peak queue \(Int(stack.counter(relay, "peakQueued"))) packets, peak RSS \(relayMemory.peak / 1024) MiB")

        stack.signal("agent-a", SIGCONT)
        getter.waitUntilExit()
        #expect(getter.terminationStatus == 0)
        #expect(try Data(contentsOf: output) == Data(contentsOf: file))
    }

    /// A gibibyte moves through a relay without any process growing with it.
    @Test func aGibibyteTransferKeepsEveryProcessFlat() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let file = try stack.randomFile("big.bin", mebibytes: 1024)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: b).ok)
        try waitForHoldings(stack, b, hold: content)
        let before = try ["relay-1", "agent-a", "agent-b"].map { try stack.memory($0).rss }

        let output = stack.directory.appendingPathComponent("a.bin")
        let result = try stack.get(content, via: a, output: output)
        #expect(result.ok)
        #expect(result.sources.map(\.kind) == [.peer])
        #expect(try Stack.sameBytes(output, file))

        var lines: [String] = []
        for (name, start) in zip(["relay-1", "agent-a", "agent-b", "origin"], before + [0]) {
            let memory = try stack.memory(name)
            lines.append("\(name) peak \(memory.peak / 1024) MiB (rss before \(start / 1024) MiB)")
            // Flat: nothing near the 1024 MiB that went through.
            #expect(memory.peak < 160 * 1024, "\(name) peaked at \(memory.peak / 1024) MiB moving 1 GiB")
        }
        print("1 GiB through a relay in \(String(format: "%.1f", result.seconds)) s: " + lines.joined(separator: "; "))
    }
}

func sendingLink(_ stack: Stack, _ agent: Stack.Agent) throws -> (sent: Double, limit: Double, window: Double) {
    guard case .array(let links)? = try stack.status(agent.control).counters["sendingLinks"], let link = links.first else {
        return (0, 0, 0)
    }
    return (link["packetsSent"]?.numberValue ?? 0, link["creditLimit"]?.numberValue ?? 0, link["window"]?.numberValue ?? 0)
}

extension Stack {
    /// Compares two files in pieces, so a gibibyte comparison doesn't need two gibibytes.
    static func sameBytes(_ a: URL, _ b: URL) throws -> Bool {
        let left = try FileHandle(forReadingFrom: a), right = try FileHandle(forReadingFrom: b)
        defer { try? left.close(); try? right.close() }
        while true {
            let x = try left.read(upToCount: 4 << 20) ?? Data(), y = try right.read(upToCount: 4 << 20) ?? Data()
            if x != y { return false }
            if x.isEmpty { return true }
        }
    }
}
