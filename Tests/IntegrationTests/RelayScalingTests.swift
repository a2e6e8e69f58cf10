import FerryProtocol
import Foundation
import Testing

@Suite struct RelayScaling {
    /// New sessions go to the least-loaded live relay, so a burst spreads over all of them.
    @Test func twelveConcurrentDownloadsUseAllThreeRelays() throws {
        let stack = try Stack(relays: 3)
        defer { stack.stop() }
        let holder = try stack.startAgent("h")
        let devices = try (1...4).map { try stack.startAgent("d\($0)", extra: ["--serving", "false"]) }
        var files: [ContentID: URL] = [:]
        for i in 0..<3 {
            let file = try stack.randomFile("content-\(i).bin", mebibytes: 8)
            files[try stack.publish(file)] = file
        }
        for content in files.keys { #expect(try stack.get(content, via: holder).ok) }
        for content in files.keys { try waitForHoldings(stack, holder, hold: content) }

        var getters: [(Process, URL, ContentID)] = []
        for device in devices {
            for content in files.keys {
                let output = stack.directory.appendingPathComponent("\(device.name)-\(content.short).bin")
                getters.append((try startGet(stack, content, via: device, output: output), output, content))
            }
        }
        for (process, output, content) in getters {
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            #expect(try Data(contentsOf: output) == Data(contentsOf: files[content]!))
        }
        let deviceIds = Set(devices.map(\.deviceId))
        let sessions = stack.events.matching("session.brokered").filter { deviceIds.contains($0.data["receiver"]?.stringValue ?? "") }
        #expect(sessions.count == 12)
        let relaysUsed = Set(sessions.compactMap { $0.data["relayEndpoint"]?.stringValue })
        #expect(relaysUsed == Set(stack.relays), "12 sessions used only \(relaysUsed.count) of 3 relays")
    }

    /// A relay stopped with SIGTERM takes no new sessions, finishes the one it carries, then
    /// exits; a relay started meanwhile takes the new sessions.
    @Test func aStoppedRelayDrainsWhileANewOneTakesNewSessions() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let c = try stack.startAgent("c")
        let first = try stack.randomFile("first.bin", mebibytes: 64)
        let second = try stack.randomFile("second.bin", mebibytes: 8)
        let x = try stack.publish(first), y = try stack.publish(second)
        #expect(try stack.get(x, via: b).ok && stack.get(y, via: b).ok)
        try waitForHoldings(stack, b, hold: x)
        try waitForHoldings(stack, b, hold: y)
        let oldRelay = try stack.status(stack.relays[0]).id

        // A's transfer through the only relay is held mid-way by freezing A.
        let outputA = stack.directory.appendingPathComponent("a.bin")
        let getA = try startGet(stack, x, via: a, output: outputA)
        try stack.events.waitFor("A's receiving link") {
            $0.topic == "link.spawned" && $0.data["role"]?.stringValue == "receiver" && $0.data["deviceId"]?.stringValue == a.deviceId
        }
        stack.signal("agent-a", SIGSTOP)
        defer { stack.signal("agent-a", SIGCONT) }

        stack.signal("relay-1", SIGTERM)
        try stack.events.waitFor("the relay to drain") { $0.topic == "relay.draining" && $0.data["relayId"]?.stringValue == oldRelay }

        // A relay started now takes the next session; the draining one gets none.
        let newEndpoint = try stack.addRelay()
        try waitUntil("the new relay to register") { try stack.relayCountAtBroker() == 2 }
        let resultC = try stack.get(y, via: c)
        #expect(resultC.ok && resultC.sources.map(\.kind) == [.peer])
        let sessionsC = stack.events.matching("session.brokered", requestId: resultC.requestId?.rawValue)
        let sessionC = try #require(sessionsC.first)
        #expect(sessionC.data["relayEndpoint"]?.stringValue == newEndpoint)
        // All that while, A's session kept the draining relay up.
        #expect(stack.processes["relay-1"]?.isRunning == true, "the relay exited with a session still open")

        // A resumes: its session finishes through the draining relay, which then exits.
        stack.signal("agent-a", SIGCONT)
        getA.waitUntilExit()
        #expect(getA.terminationStatus == 0)
        #expect(try Data(contentsOf: outputA) == Data(contentsOf: first))
        try waitUntil("the drained relay to exit", timeout: 25) { stack.processes["relay-1"]?.isRunning == false }
        let closings = stack.events.matching("link.closed").filter { $0.data["relayId"]?.stringValue == oldRelay }
        let closed = try #require(closings.first)
        #expect(closed.data["reason"]?.stringValue == "done")
        #expect(closed.data["payloadBytes"]?.numberValue == Double(64 << 20))
    }
}

/// Starts `ferry get` in the background.
func startGet(_ stack: Stack, _ content: ContentID, via agent: Stack.Agent, output: URL) throws -> Process {
    let process = Process()
    process.executableURL = Stack.binaries.appendingPathComponent("ferry")
    process.arguments = ["get", content.hex, "--agent", agent.control, "--output", output.path, "--timeout", "120"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}
