import FerryContent
import FerryProtocol
import Foundation
import Testing
import ZeroMQ

/// CurveZMQ with ZAP on real processes: a secured stack still delivers through a relay,
/// unknown keys are refused and published, and an outside server on intake's allow list
/// pushes from pyzmq while one that isn't listed gets nothing in.
@Suite(.serialized) struct TransportSecurity {
    @Test func aSecuredStackDeliversFromAPeerThroughTheRelayItVouchedFor() throws {
        let stack = try Stack(relays: 1, secure: true)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let file = try stack.randomFile("content.bin", mebibytes: 8)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: b).ok)
        try waitForHoldings(stack, b, hold: content)
        let copy = URL(fileURLWithPath: stack.path("a.bin"))
        let result = try stack.get(content, via: a, output: copy)
        #expect(result.ok)
        #expect(result.sources.contains { $0.kind == .peer && $0.bytes == 8 << 20 })
        #expect(try Data(contentsOf: copy) == Data(contentsOf: file))

        // The broker knows the relay by the key it proved, and put that key in the session.
        guard case .array(let relays)? = try stack.status(stack.brokerControl).counters["relays"],
              case .string(let relayKey)? = relays.first?["key"] else {
            Issue.record("the broker's status names no relay key")
            return
        }
        let relayKeys = try String(contentsOfFile: stack.path("relay-1/relay.keys"), encoding: .utf8)
        #expect(relayKeys.contains("\"agreement\""))
        #expect(Data(base64Encoded: relayKey)?.count == 32)
        let enrolled = try JSONSerialization.jsonObject(with: try stack.http("GET", "/v1/devices",
                                                                           headers: ["Authorization": "Bearer \(stack.operatorToken)"]).body) as? [[String: Any]]
        #expect(enrolled?.contains { $0["kind"] as? String == "relay" && $0["agreementKey"] as? String == relayKey } == true)
    }

    @Test func unknownKeysAndPlainClientsAreRefusedAndTheRefusalIsAnEvent() throws {
        let stack = try Stack(relays: 0, secure: true)
        defer { stack.stop() }
        // A well-formed hello under a key nobody enrolled: refused at the handshake, so no welcome.
        let stranger = try CurveKeyPair.generate()
        let dealer = try stack.context.socket(.dealer)
        defer { dealer.close() }
        try dealer.makeCurveClient(stranger, serverKey: try stack.fleetKey(.public, "broker"))
        try dealer.connect(stack.brokerControl)
        try dealer.send(try AgentHello(deviceId: DeviceID("dev-stranger"), zone: nil).frames(), dontWait: true)
        let refusal = try stack.events.waitFor("the broker to refuse the stranger's key") {
            $0.topic == "transport.refused" && $0.publisher == "broker" && $0.data["key"]?.stringValue == Data(stranger.publicKey).base64EncodedString()
        }
        #expect(refusal.data["domain"]?.stringValue == "parties")
        var poller = Poller()
        poller.add(dealer)
        try poller.poll(timeoutMilliseconds: 1500)
        #expect(try dealer.receive(dontWait: true) == nil)
        #expect(try stack.status(stack.brokerControl).counters["agents"] == JSONValue(0))

        // A plain PUSH (no CURVE at all) gets nothing into intake: a keyed one that connected
        // and sent after it gets its message counted, and that one alone.
        func received() throws -> Double { stack.counter(try stack.status(stack.status["intake"]!), "received") }
        let intakeBefore = try received()
        let plain = try stack.context.socket(.push)
        defer { plain.close() }
        try plain.connect(stack.intake)
        _ = try plain.send(strings: ["ferry/1", "download.request", "{}"], dontWait: true)
        let keyed = try stack.context.socket(.push)
        defer { keyed.close() }
        try stack.secureAsOperator(keyed, server: "intake")
        try keyed.connect(stack.intake)
        try keyed.send(strings: ["ferry/1", "download.request", "{}"])
        try waitUntil("intake to count the keyed message") { try received() > intakeBefore }
        #expect(try received() == intakeBefore + 1)

        // A fleet key is let in, but may not speak for a party at the broker...
        let probe = try stack.context.socket(.dealer)
        defer { probe.close() }
        try stack.secureAsOperator(probe, server: "broker")
        try probe.connect(stack.brokerControl)
        try probe.send(try AgentHello(deviceId: DeviceID("dev-posing"), zone: nil).frames(), dontWait: true)
        let dropped = try stack.events.waitFor("the broker to drop the operator's hello") {
            $0.topic == "message.dropped" && $0.publisher == "broker" && $0.data["kind"]?.stringValue == "agent.hello"
        }
        #expect(dropped.data["peer"]?.stringValue == "fleet:operator")
        // ...nor withdraw or revoke at intake: that is the origin's word alone.
        let push = try stack.context.socket(.push)
        defer { push.close() }
        try stack.secureAsOperator(push, server: "intake")
        try push.connect(stack.intake)
        try push.send(try DeviceRevocation(deviceId: DeviceID("dev-victim")).frames())
        try stack.events.waitFor("intake to refuse a revocation not from the origin") {
            $0.topic == "request.rejected" && $0.publisher == "intake" && $0.data["reason"]?.stringValue == "not-the-origin"
        }
        #expect(stack.events.matching("device.lost").isEmpty, "the revocation went on to the matcher")
    }

    /// The documented way for a server outside Ferry: its own key pair from pyzmq, intake's
    /// public key from the fleet's keys, its public key on intake's allow list.
    @Test func anOutsideServerOnIntakesAllowListPushesFromPyzmq() throws {
        // Keys first, so the allow list exists when intake starts.
        let pairs = try runPyzmq("import zmq\nfor _ in range(2):\n    p, s = zmq.curve_keypair(); print(p.decode(), s.decode())", [])
            .split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        try #require(pairs.count == 2 && pairs.allSatisfy { $0.count == 2 })
        let (listed, unlisted) = (pairs[0], pairs[1])
        let allow = FileManager.default.temporaryDirectory.appendingPathComponent("intake-allow-\(UUID().uuidString.prefix(8))")
        try "# servers allowed to push requests\n\(listed[0]) billing-server\n".write(to: allow, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: allow) }

        let stack = try Stack(relays: 0, secure: true, intakeAllowList: allow.path)
        defer { stack.stop() }
        let a = try stack.startAgent("a")
        let content = try stack.publish(try stack.randomFile("content.bin", mebibytes: 1))
        let script = """
            import json, sys, zmq
            intake, server_key, public, secret, request_id, device, origin, content, size = sys.argv[1:10]
            push = zmq.Context().socket(zmq.PUSH)
            push.curve_serverkey = server_key.encode()
            push.curve_publickey = public.encode()
            push.curve_secretkey = secret.encode()
            # Queue only to a connection the handshake completed, so a refused key sends nothing.
            push.setsockopt(zmq.IMMEDIATE, 1)
            push.setsockopt(zmq.SNDTIMEO, 5000)
            push.setsockopt(zmq.LINGER, 20000)
            push.connect(intake)
            request = {"requestId": request_id, "deviceId": device, "server": origin,
                       "content": {"contentId": content, "size": int(size), "chunkSize": 262144, "packetSize": 65536}}
            try:
                push.send_multipart([b"ferry/1", b"download.request", json.dumps(request).encode()])
                print("sent")
            except zmq.Again:
                print("not connected")
            push.close()
            """
        let intakeKey = Z85.encode(try stack.fleetKey(.public, "intake"))
        let common = [stack.intake, intakeKey]
        let tail = [a.deviceId, stack.originURL, content.hex, String(1 << 20)]
        #expect(try runPyzmq(script, common + [listed[0], listed[1], "from-pyzmq-listed"] + tail).contains("sent"))
        let received = try stack.events.waitFor(topic: "request.received", requestId: "from-pyzmq-listed")
        #expect(received.data["deviceId"]?.stringValue == a.deviceId)

        #expect(try runPyzmq(script, common + [unlisted[0], unlisted[1], "from-pyzmq-unlisted"] + tail).contains("not connected"))
        let unlistedKey = Data(try #require(Z85.decode(unlisted[0]))).base64EncodedString()
        let refusal = try stack.events.waitFor("intake to refuse the unlisted server") {
            $0.topic == "transport.refused" && $0.publisher == "intake" && $0.data["key"]?.stringValue == unlistedKey
        }
        #expect(refusal.data["domain"]?.stringValue == "listed")
        #expect(stack.events.matching("request.received", requestId: "from-pyzmq-unlisted").isEmpty)
    }
}

/// CURVE for the event stream's subscribers is an option: with it on, a plain SUB reads
/// nothing and one with a fleet key reads what publishers send.
@Suite struct SecuredEventStream {
    @Test func withCurveSubscribersOnlyAKeyReadsTheStream() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-events-curve-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let keys = directory.appendingPathComponent("keys").path
        let make = Process()
        make.executableURL = Stack.binaries.appendingPathComponent("ferry")
        make.arguments = ["keys", "fleet", keys]
        make.standardOutput = FileHandle.nullDevice
        try make.run()
        make.waitUntilExit()
        try #require(make.terminationStatus == 0)
        let eventsIn = "tcp://127.0.0.1:\(Ports.free())", eventsOut = "tcp://127.0.0.1:\(Ports.free())"
        let bus = Process()
        bus.executableURL = Stack.binaries.appendingPathComponent("ferry-eventbus")
        bus.arguments = ["--publishers-bind", eventsIn, "--subscribers-bind", eventsOut, "--status-bind", "tcp://127.0.0.1:\(Ports.free())",
                         "--metrics-bind", "off", "--transport-keys", keys, "--events-curve", "true"]
        bus.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
        bus.standardError = FileHandle.nullDevice
        try bus.run()
        defer { bus.terminate(); bus.waitUntilExit() }

        let context = try Context()
        let operatorKeys = try CurveKeyPair(secretKey: try Stack.fleetKey(in: keys, .secret, "operator"))
        let publisher = try context.socket(.pub)
        defer { publisher.close() }
        try publisher.makeCurveClient(operatorKeys, serverKey: try Stack.fleetKey(in: keys, .public, "eventbus"))
        try publisher.connect(eventsIn)
        let plain = try context.socket(.sub), keyed = try context.socket(.sub)
        defer { plain.close(); keyed.close() }
        try plain.subscribe("")
        try keyed.subscribe("")
        try plain.connect(eventsOut)
        try keyed.makeCurveClient(operatorKeys, serverKey: try Stack.fleetKey(in: keys, .public, "eventbus"))
        try keyed.connect(eventsOut)

        var keyedSeen = 0, plainSeen = 0
        try waitUntil("the keyed subscriber to read an event", timeout: 20) {
            let event = FerryEvent(topic: "test.ping", time: Timestamp.now(), publisher: "operator.test", seq: 1, requestId: nil, sessionId: nil, data: [:])
            try publisher.send(try event.frames, dontWait: true)
            Thread.sleep(forTimeInterval: 0.1)
            while try keyed.receive(dontWait: true) != nil { keyedSeen += 1 }
            while try plain.receive(dontWait: true) != nil { plainSeen += 1 }
            return keyedSeen > 0
        }
        // One last event, seen by the keyed subscriber: the plain one had it as long.
        let last = FerryEvent(topic: "test.last", time: Timestamp.now(), publisher: "operator.test", seq: 2, requestId: nil, sessionId: nil, data: [:])
        try publisher.send(try last.frames, dontWait: true)
        try waitUntil("the keyed subscriber to read the last event", timeout: 10) {
            var lastSeen = false
            while let frames = try keyed.receive(dontWait: true) { lastSeen = lastSeen || frames.first?.string == "test.last" }
            return lastSeen
        }
        while try plain.receive(dontWait: true) != nil { plainSeen += 1 }
        #expect(plainSeen == 0, "a subscriber without a key read \(plainSeen) events")
    }
}
