import FerryLink
import FerryProtocol
import FerryTrust
import Foundation
import Testing
import ZeroMQ

/// A real relay process, driven by the test in the broker's place: the test welcomes it with a
/// token key of its own, opens links on it, and plays both devices, so it can present forged
/// tokens, overrun a quota and measure a rate limit.
@Suite struct RelayAuthorisation {
    final class FakeBroker {
        let stack: Stack
        let control: Socket
        let key = SigningKey.random()
        var relayId: RelayID!
        let relayEndpoint: String

        init(_ stack: Stack) throws {
            self.stack = stack
            control = try stack.context.socket(.router)
            let endpoint = "tcp://127.0.0.1:\(Ports.free())"
            try control.bind(endpoint)
            relayEndpoint = "tcp://127.0.0.1:\(Ports.free())"
            try stack.start("relay-under-test", "ferry-relay", ["--bind", relayEndpoint, "--broker", endpoint, "--data-dir", stack.path("relay-under-test")])
            let hello = try receive(RelayHello.self)
            relayId = hello.relayId
            try send(Welcome(heartbeatMilliseconds: 1000, tokenKey: key.publicKey))
        }

        func receive<M: WireMessage>(_ type: M.Type) throws -> M {
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                var poller = Poller()
                poller.add(control)
                try poller.poll(timeoutMilliseconds: 100)
                while let frames = try control.receive(dontWait: true) {
                    if frames.count == 4, frames[2].string == M.kind { return try M.decode(frames: frames.dropFirst().map(\.data)) }
                }
            }
            throw StackError("no \(M.kind) from the relay")
        }

        func send<M: WireMessage>(_ message: M) throws {
            _ = try control.send([Data(relayId.rawValue.utf8)] + message.frames())
        }

        /// Opens a link between a sender at .2 and a receiver at .1 of `block`; returns its session.
        func open(block: Int, window: Int = 8, quotaBytes: UInt64? = nil, bytesPerSecond: UInt64? = nil) throws -> SessionID {
            let session = SessionID.random()
            try send(LinkOpen(sessionId: session, requestId: try RequestID("req-\(block)"), contentId: try ContentID(String(repeating: "7", count: 64)),
                              address: "100.97.\(block).3", upstream: LinkHop(address: "100.97.\(block).2"),
                              downstream: LinkHop(address: "100.97.\(block).1"), window: window, idleTimeoutMilliseconds: 30_000,
                              quotaBytes: quotaBytes, bytesPerSecond: bytesPerSecond))
            _ = try receive(LinkReady.self)
            return session
        }

        func token(_ session: SessionID, address: String, role: SessionRole, key: SigningKey? = nil) throws -> SessionToken {
            try SessionTokens.issue(SessionGrant(sessionId: session, relayId: relayId, address: address, role: role,
                                                 expiresAt: SessionTokens.nowMilliseconds() + 60_000), with: key ?? self.key)
        }

        /// A device's end of the link: a DEALER named by its overlay address.
        func party(_ address: String) throws -> Socket {
            let socket = try stack.context.socket(.dealer)
            try socket.setIdentity(address)
            try socket.connect(relayEndpoint)
            return socket
        }
    }

    static func attach(_ socket: Socket, _ session: SessionID, role: SessionRole, token: SessionToken?) throws {
        _ = try socket.send(messages: LinkFrame.attach(session, LinkAttach(role: role, want: [], token: token)))
    }

    static func data(_ socket: Socket, _ session: SessionID, sequence: UInt32, bytes: Int) throws {
        let payload = Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &+ Int(sequence)) })
        _ = try socket.send(messages: LinkFrame.messages(PacketHeader(kind: .data, sessionId: session, sequence: sequence, index: UInt16(sequence)),
                                                         payload: payload))
    }

    /// Every link packet `socket` has received within `seconds`, as (kind, payload).
    static func drain(_ socket: Socket, seconds: Double, until: (([(PacketHeader.Kind, Data)]) -> Bool)? = nil) throws -> [(PacketHeader.Kind, Data)] {
        try received(on: socket, for: seconds, { frames in
            (try PacketHeader(decoding: frames[0].data).kind, frames.count > 1 ? frames[1].data : Data())
        }, until: until ?? { _ in false })
    }

    @Test func onlyPartiesWithTheBrokersTokenAreForwarded() throws {
        let stack = try Stack(relays: 0)
        defer { stack.stop() }
        let broker = try FakeBroker(stack)
        let relay = broker.relayEndpoint

        // Session 1: Mallory takes the sender's address before the sender comes, with a token
        // signed by another key, one for the receiver's address, one for the wrong role, and none.
        let first = try broker.open(block: 1)
        let receiver = try broker.party("100.97.1.1")
        defer { receiver.close() }
        try Self.attach(receiver, first, role: .receiver, token: try broker.token(first, address: "100.97.1.1", role: .receiver))
        _ = try receiver.send(messages: LinkFrame.messages(PacketHeader(kind: .credit, sessionId: first, sequence: 8)))
        let mallory = try broker.party("100.97.1.2")
        defer { mallory.close() }
        try Self.attach(mallory, first, role: .sender, token: try broker.token(first, address: "100.97.1.2", role: .sender, key: SigningKey.random()))
        try Self.attach(mallory, first, role: .sender, token: try broker.token(first, address: "100.97.1.1", role: .sender))
        try Self.attach(mallory, first, role: .sender, token: try broker.token(first, address: "100.97.1.2", role: .receiver))
        try Self.attach(mallory, first, role: .sender, token: nil)
        for sequence in 0..<4 { try Self.data(mallory, first, sequence: UInt32(sequence), bytes: 1024) }
        try waitUntil("the relay to refuse all of Mallory's frames") {
            (try stack.status(relay).counters["drops"]?["unauthorised"]?.numberValue ?? 0) >= 8
        }
        #expect(try Self.drain(receiver, seconds: 0.5).isEmpty, "a frame of Mallory's reached the receiver")

        // Session 2: both parties have the broker's tokens; the receiver sees the sender's attach
        // without its token, then every byte. Mallory, connecting under the receiver's address
        // while it is attached, takes nothing over.
        let second = try broker.open(block: 2)
        let sender = try broker.party("100.97.2.2"), other = try broker.party("100.97.2.1")
        defer { sender.close(); other.close() }
        try Self.attach(other, second, role: .receiver, token: try broker.token(second, address: "100.97.2.1", role: .receiver))
        _ = try other.send(messages: LinkFrame.messages(PacketHeader(kind: .credit, sessionId: second, sequence: 8)))
        try Self.attach(sender, second, role: .sender, token: try broker.token(second, address: "100.97.2.2", role: .sender))
        try waitUntil("the sender's credit", timeout: 10) { try Self.drain(sender, seconds: 0.2).contains { $0.0 == .credit } }
        let impostor = try broker.party("100.97.2.1")
        defer { impostor.close() }
        for sequence in 0..<4 { try Self.data(sender, second, sequence: UInt32(sequence), bytes: 1024) }
        let received = try Self.drain(other, seconds: 10) { $0.filter { $0.0 == .data }.count >= 4 }
        let attach = try #require(received.first { $0.0 == .attach })
        #expect(try JSONCoding.decoder.decode(LinkAttach.self, from: attach.1).token == nil)
        #expect(received.filter { $0.0 == .data }.map(\.1) == (0..<4).map { sequence in Data((0..<1024).map { UInt8(truncatingIfNeeded: $0 &+ sequence) }) })
        #expect(try Self.drain(impostor, seconds: 0.5).isEmpty, "the impostor took over the receiver's address")

        // An attached party still can't send what its side may not, or speak for another session.
        _ = try sender.send(messages: LinkFrame.messages(PacketHeader(kind: .credit, sessionId: second, sequence: 99)))
        try Self.data(sender, first, sequence: 0, bytes: 1024)
        try waitUntil("both to be dropped") {
            let drops = try stack.status(relay).counters["drops"]
            return drops?["wrong-direction"]?.numberValue == 1 && drops?["session-mismatch"]?.numberValue == 1
        }
        #expect(try Self.drain(other, seconds: 0.3).isEmpty && Self.drain(receiver, seconds: 0.3).isEmpty)

        let refused = try stack.events.waitFor("a link.dropped event naming the refusal") {
            $0.topic == "link.dropped" && $0.data["reason"]?.stringValue == "unauthorised"
        }
        print("relay authorisation: refused \(Int(try stack.status(relay).counters["drops"]?["unauthorised"]?.numberValue ?? 0)) frames from a party without a valid token (\(refused.data["detail"]?.stringValue ?? ""))")
    }

    @Test func aSessionOverItsQuotaIsEndedAndOneOverItsRateWaits() throws {
        let stack = try Stack(relays: 0)
        defer { stack.stop() }
        let broker = try FakeBroker(stack)

        // Quota: 3 packets of 1 KiB. The fourth ends the session for both sides.
        let limited = try broker.open(block: 2, quotaBytes: 3 * 1024)
        let receiver = try broker.party("100.97.2.1"), sender = try broker.party("100.97.2.2")
        defer { receiver.close(); sender.close() }
        try Self.attach(receiver, limited, role: .receiver, token: try broker.token(limited, address: "100.97.2.1", role: .receiver))
        _ = try receiver.send(messages: LinkFrame.messages(PacketHeader(kind: .credit, sessionId: limited, sequence: 8)))
        try Self.attach(sender, limited, role: .sender, token: try broker.token(limited, address: "100.97.2.2", role: .sender))
        try waitUntil("the sender's credit", timeout: 10) { try Self.drain(sender, seconds: 0.2).contains { $0.0 == .credit } }
        for sequence in 0..<5 { try Self.data(sender, limited, sequence: UInt32(sequence), bytes: 1024) }
        let atReceiver = try Self.drain(receiver, seconds: 10) { $0.contains { $0.0 == .abort } }
        #expect(atReceiver.filter { $0.0 == .data }.count == 3)
        #expect(atReceiver.contains { $0.0 == .abort && $0.1 == Data("quota-exceeded".utf8) })
        #expect(try Self.drain(sender, seconds: 10) { $0.contains { $0.0 == .abort } }.contains { $0.0 == .abort && $0.1 == Data("quota-exceeded".utf8) })
        let over = try stack.events.waitFor(topic: "link.quota_exceeded")
        #expect(over.data["quotaBytes"]?.numberValue == Double(3 * 1024))
        let closed = try broker.receive(LinkClosed.self)
        // Counted as content: each 1 KiB packet less its 16-byte seal.
        #expect(closed.reason == "quota-exceeded" && closed.counters.payloadBytesForwarded == 3 * (1024 - 16))

        // Rate: 512 KiB/s with a 1 MiB burst. 2 MiB in flight at once reaches the receiver no
        // sooner than the second mebibyte takes at that rate, and every byte arrives.
        let paced = try broker.open(block: 3, window: 32, bytesPerSecond: 512 << 10)
        let slowReceiver = try broker.party("100.97.3.1"), fastSender = try broker.party("100.97.3.2")
        defer { slowReceiver.close(); fastSender.close() }
        try Self.attach(slowReceiver, paced, role: .receiver, token: try broker.token(paced, address: "100.97.3.1", role: .receiver))
        _ = try slowReceiver.send(messages: LinkFrame.messages(PacketHeader(kind: .credit, sessionId: paced, sequence: 32)))
        try Self.attach(fastSender, paced, role: .sender, token: try broker.token(paced, address: "100.97.3.2", role: .sender))
        try waitUntil("the sender's credit", timeout: 10) { try Self.drain(fastSender, seconds: 0.2).contains { $0.0 == .credit } }
        let started = Date()
        for sequence in 0..<32 { try Self.data(fastSender, paced, sequence: UInt32(sequence), bytes: 65_536) }
        let arrived = try Self.drain(slowReceiver, seconds: 20) { $0.filter { $0.0 == .data }.count >= 32 }
        let took = Date().timeIntervalSince(started)
        #expect(arrived.filter { $0.0 == .data }.count == 32)
        #expect(took >= 1.6, "2 MiB at 512 KiB/s after a 1 MiB burst took only \(took) s")
        let throttled = try stack.events.waitFor(topic: "link.throttled")
        #expect(throttled.data["bytesPerSecond"]?.numberValue == Double(512 << 10))
        print("relay limits: quota 3 KiB ended the session at the 4th packet; 2 MiB at 512 KiB/s took \(String(format: "%.2f", took)) s (ideal 2.0 after the burst)")
    }
}
