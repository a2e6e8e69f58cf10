import FerryProtocol
import Foundation
import Testing

@Suite struct Concurrency {
    /// 20 downloads at once: 4 devices each get 5 contents held by 2 devices, through 2 relays.
    @Test func twentyConcurrentDownloadsAllComplete() throws {
        let stack = try Stack(relays: 2)
        defer { stack.stop() }
        let holders = try ["h1", "h2"].map { try stack.startAgent($0) }
        let devices = try ["d1", "d2", "d3", "d4"].map { try stack.startAgent($0) }
        var files: [ContentID: URL] = [:]
        for i in 0..<5 {
            let file = try stack.randomFile("content-\(i).bin", mebibytes: 4)
            files[try stack.publish(file)] = file
        }
        for holder in holders {
            for content in files.keys { #expect(try stack.get(content, via: holder).ok) }
        }
        for holder in holders { for content in files.keys { try waitForHoldings(stack, holder, hold: content) } }

        var getters: [(Process, URL, ContentID)] = []
        for device in devices {
            for (content, _) in files {
                let output = stack.directory.appendingPathComponent("\(device.name)-\(content.short).bin")
                getters.append((try startGet(stack, content, via: device, output: output), output, content))
            }
        }
        for (process, output, content) in getters {
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "a get of \(content.short) failed")
            #expect(try Data(contentsOf: output) == Data(contentsOf: files[content]!))
        }
        let deviceIds = Set(devices.map(\.deviceId))
        try waitUntil("the devices' 20 fulfilments at the origin", timeout: 60) {
            try stack.fulfilments().filter { deviceIds.contains($0.deviceId.rawValue) }.count == 20
        }

        let brokered = stack.events.matching("session.brokered").filter { event in
            devices.contains { $0.deviceId == event.data["receiver"]?.stringValue }
        }
        // One session a download, or one a stripe when both holders were free to send one; and
        // one more each time the swarm plan moved a device whose hop lagged (20 transfers on this
        // machine's cores may well) or a stripe far behind went to a holder that was done:
        // nothing else.
        let shares = Dictionary(grouping: brokered) { $0.requestId ?? "" }
            .mapValues { sessions in Set(sessions.map { $0.data["stripe"]?["index"]?.numberValue ?? -1 }).count }
        let replans = stack.events.matching("session.repathed").filter { event in
            let reason = event.data["reason"]?.stringValue ?? ""
            return SourceChange.Reason(rawValue: reason) != nil || reason == FinishReason.slowerStripe.rawValue
        }
        #expect(shares.count == 20)
        #expect(brokered.count == shares.values.reduce(0, +) + replans.count, "\(brokered.count) sessions, \(replans.count) re-planned, shares \(shares)")
        let relaysUsed = Set(brokered.compactMap { $0.data["relays"].map { "\($0)" } })
        let sendersUsed = Set(brokered.compactMap { $0.data["sender"]?.stringValue })
        #expect(relaysUsed.count == 2, "sessions used relays \(relaysUsed)")
        // Both holders served; a device that finished a content early may serve it to others too.
        #expect(Set(holders.map(\.deviceId)).isSubset(of: sendersUsed), "sessions used senders \(sendersUsed)")
        #expect(sendersUsed.isSubset(of: Set(holders.map(\.deviceId)).union(deviceIds)))
        let peerRecords = try stack.fulfilments().filter { record in devices.contains { $0.deviceId == record.deviceId.rawValue } }
        #expect(peerRecords.count == 20)
        #expect(peerRecords.allSatisfy { $0.verification == .matched && $0.bytesFromOrigin == 0 })
    }
}

@Suite struct OutsideServersAndHostileInput {
    /// A server outside Ferry's Swift code pushes the documented message with pyzmq, and the
    /// request is fulfilled like any other.
    @Test func aRequestPushedFromPythonIsFulfilled() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let content = try stack.publish(try stack.randomFile("content.bin", mebibytes: 4))
        #expect(try stack.get(content, via: b).ok)
        try waitForHoldings(stack, b, hold: content)

        let script = """
            import json, sys, urllib.request, zmq
            intake, origin, device, content, token = sys.argv[1:6]
            ask = urllib.request.Request(f"{origin}/v1/content/{content}/manifest", headers={"Authorization": f"Bearer {token}"})
            manifest = json.load(urllib.request.urlopen(ask))
            request = {
                "requestId": "from-python-1", "deviceId": device, "server": origin,
                "content": {k: manifest[k] for k in ("contentId", "size", "chunkSize", "packetSize")},
            }
            push = zmq.Context().socket(zmq.PUSH)
            # Send only once connected, and wait for it to leave: a loaded machine may take a while.
            push.setsockopt(zmq.IMMEDIATE, 1)
            push.setsockopt(zmq.SNDTIMEO, 20000)
            push.setsockopt(zmq.LINGER, 20000)
            push.connect(intake)
            push.send_multipart([b"ferry/1", b"download.request", json.dumps(request).encode()])
            push.close()
            """
        _ = try runPyzmq(script, [stack.intake, stack.originURL, a.deviceId, content.hex, stack.operatorToken])

        try stack.events.waitFor(topic: "fulfilment.acknowledged", requestId: "from-python-1")
        let record = try #require(try stack.fulfilments().first { $0.requestId.rawValue == "from-python-1" })
        #expect(record.deviceId.rawValue == a.deviceId)
        #expect(record.sources.first?.device?.rawValue == b.deviceId)
        #expect(record.verification == .matched)
    }

    /// Garbage at the relay's packet socket is counted and dropped; sessions still work.
    @Test func hostileFramesAtTheRelayAreCountedAndSessionsGoOn() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let file = try stack.randomFile("content.bin", mebibytes: 8)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: b).ok)
        try waitForHoldings(stack, b, hold: content)

        let attacker = try stack.context.socket(.dealer)
        defer { attacker.close() }
        try attacker.setIdentity("100.96.0.250")
        try attacker.connect(stack.relays[0])
        let forged = PacketHeader(kind: .data, sessionId: SessionID(12345), sequence: 0, length: 4).encoded
        for round in 0..<200 {
            try attacker.send([Data("not a header".utf8)])
            try attacker.send([Data(forged), Data("evil".utf8)])
            try attacker.send([Data(forged), Data(count: round % 7)])
            try attacker.send([Data(), Data(), Data()])
        }
        try waitUntil("the relay to count 800 drops") { stack.counter(try stack.status(stack.relays[0]), "dropped") >= 800 }

        let output = stack.directory.appendingPathComponent("a.bin")
        let result = try stack.get(content, via: a, output: output)
        #expect(result.ok && result.sources.map(\.kind) == [.peer])
        #expect(try Data(contentsOf: output) == Data(contentsOf: file))
        let relay = try stack.status(stack.relays[0])
        #expect(stack.counter(relay, "payloadBytesForwarded") == 8 * 1_048_576)
        #expect(try stack.events.waitFor(topic: "link.dropped").data["reason"] != nil)
    }
}
