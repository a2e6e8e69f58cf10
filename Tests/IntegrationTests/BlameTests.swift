import FerryLink
import FerryProtocol
import Foundation
import Testing
import ZeroMQ

/// Hole 6 of the trust review, on real processes: a relay that alters packets on the way. A
/// tag failure is counted against the sender and the relay; neither is blamed alone until its
/// failures have two different partners, so the tampering relay is evicted once two senders'
/// packets failed through it, and the honest senders it framed are never banned.
@Suite(.serialized) struct BlameOnRealProcesses {
    /// Speaks the relay's half of the broker dialog without transport keys and forwards link
    /// frames between the parties, flipping a byte of every data packet's payload.
    final class TamperingRelay: @unchecked Sendable {
        let id = "relay-tampering"
        let endpoint = "tcp://127.0.0.1:\(Ports.free())"
        private let broker: Socket, router: Socket
        private let stop = ManualFlag()
        private let done = DispatchSemaphore(value: 0)

        init(_ stack: Stack) throws {
            broker = try stack.context.socket(.dealer)
            try broker.setIdentity(id)
            try broker.connect(stack.brokerControl)
            router = try stack.context.socket(.router)
            // Like the real relay: a frame for a party not connected yet waits rather than vanishes.
            try router.setRouterMandatory(true)
            try router.bind(endpoint)
            _ = try broker.send(try RelayHello(relayId: try RelayID(id), endpoint: endpoint, zone: nil).frames())
            Thread.detachNewThread { [self] in
                defer { done.signal() }
                var sessions: [String: String] = [:]  // overlay address -> the other side's
                var waiting: [[Message]] = []
                var nextHeartbeat = Date()
                while !stop.isSet {
                    do {
                        try pass(&sessions, &waiting, &nextHeartbeat)
                    } catch {
                        errors.append("\(error)")
                    }
                }
            }
        }

        /// What went wrong in the relay's loop, if anything (it keeps going).
        private(set) var errors: [String] = []

        private func pass(_ sessions: inout [String: String], _ waiting: inout [[Message]], _ nextHeartbeat: inout Date) throws {
            waiting = waiting.filter { frames in !((try? router.send(messages: frames, dontWait: true)) ?? false) }
            var poller = Poller()
            let fromBroker = poller.add(broker), fromParties = poller.add(router)
            try poller.poll(timeoutMilliseconds: 100)
            if Date() >= nextHeartbeat {
                _ = try broker.send(try Heartbeat(load: 0).frames(), dontWait: true)
                nextHeartbeat = Date().addingTimeInterval(0.3)
            }
            if poller.isReadable(fromBroker) {
                while let frames = try broker.receive(dontWait: true) {
                    guard frames.count == 3, frames[1].string == LinkOpen.kind else { continue }
                    let open = try LinkOpen.decode(frames: frames.map(\.data))
                    sessions[open.upstream.address] = open.downstream.address
                    sessions[open.downstream.address] = open.upstream.address
                    _ = try broker.send(try LinkReady(sessionId: open.sessionId, address: open.address).frames(), dontWait: true)
                }
            }
            if poller.isReadable(fromParties) {
                while var frames = try router.receive(dontWait: true) {
                    guard frames.count >= 2, let other = sessions[frames[0].string] else { continue }
                    if frames.count == 3, try PacketHeader(decoding: frames[1].data).kind == .data {
                        var payload = frames[2].data
                        payload[payload.startIndex] ^= 0x01
                        frames[2] = Message(payload)
                    }
                    frames[0] = Message(Data(other.utf8))
                    if !((try? router.send(messages: frames, dontWait: true)) ?? false) { waiting.append(frames) }
                }
            }
        }

        func close() {
            stop.set()
            done.wait()
            broker.close()
            router.close()
        }
    }

    final class ManualFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        var isSet: Bool { lock.withLock { value } }
        func set() { lock.withLock { value = true } }
    }

    @Test func aTamperingRelayIsEvictedAndTheSendersItFramedAreNotBanned() throws {
        let stack = try Stack(relays: 0)
        defer { stack.stop() }
        let tampering = try TamperingRelay(stack)
        defer { tampering.close() }
        try stack.events.waitFor("the tampering relay to join") { $0.topic == "relay.joined" && $0.data["relayId"]?.stringValue == tampering.id }
        // Receivers wait for Ferry's plan however long it takes, so every download here goes
        // through a relay when a holder exists, never straight to the origin on a deadline.
        let patient = ["--plan-deadline-ms", "60000"]
        let b = try stack.startAgent("b"), c = try stack.startAgent("c", extra: patient)
        let file = try stack.randomFile("tampered.bin", mebibytes: 2)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: b).ok)
        try waitForHoldings(stack, b, hold: content)

        // C gets it from B through the tampering relay: the packets fail their tags. One
        // failure convicts nobody; with no other relay, C finishes from the origin.
        let first = try stack.get(content, via: c, output: stack.directory.appendingPathComponent("c.bin"))
        #expect(first.ok && first.sources.map(\.kind).contains(.origin), "\(first.sources)")
        #expect(try Data(contentsOf: stack.directory.appendingPathComponent("c.bin")) == Data(contentsOf: file))
        let request = try #require(first.requestId).rawValue
        let rejected = try stack.events.waitFor(topic: "transfer.chunk_rejected", requestId: request)
        #expect(rejected.data["cause"]?.stringValue == "tag" && rejected.data["sender"]?.stringValue == b.deviceId)
        let unopened = try stack.events.waitFor("the broker to count the failure against both") {
            $0.topic == "session.failed" && $0.requestId == request && $0.data["reason"]?.stringValue == "unopened-packets"
        }
        #expect(unopened.data["relayId"]?.stringValue == tampering.id && unopened.data["relaySenders"]?.numberValue == 1)

        // B leaves; A gets it from C through the same relay: a second sender's packets fail
        // there, so the relay is evicted, and neither sender is banned.
        try waitForHoldings(stack, c, hold: content)
        stack.signal("agent-b", SIGTERM)
        try stack.events.waitFor("the broker to lose B") {
            $0.topic == "device.lost" && $0.publisher == "broker" && $0.data["deviceId"]?.stringValue == b.deviceId
        }
        let a = try stack.startAgent("a", extra: patient)
        let second = try stack.get(content, via: a)
        #expect(second.ok, "\(second.error ?? "")")
        let evicted = try stack.events.waitFor("the tampering relay to be evicted") {
            $0.topic == "relay.lost" && $0.data["relayId"]?.stringValue == tampering.id
        }
        #expect(evicted.data["reason"]?.stringValue == "evicted")
        #expect(stack.events.matching("device.banned").isEmpty, "an honest sender was banned: \(stack.events.matching("device.banned").map(\.data))")

        // C was framed, not convicted: through an honest relay it serves the next device (A,
        // which holds it now too, leaves first, so C is the only holder).
        stack.signal("agent-a", SIGTERM)
        try stack.events.waitFor("the broker to lose A") {
            $0.topic == "device.lost" && $0.publisher == "broker" && $0.data["deviceId"]?.stringValue == a.deviceId
        }
        _ = try stack.addRelay()
        try waitUntil("the honest relay to register", timeout: 30) { try stack.relayCountAtBroker() >= 1 }
        let d = try stack.startAgent("d", extra: patient)
        let output = stack.directory.appendingPathComponent("d.bin")
        let third = try stack.get(content, via: d, output: output)
        #expect(third.ok && third.sources.map(\.kind) == [.peer] && third.sources.first?.device?.rawValue == c.deviceId, "\(third.sources)")
        #expect(try Data(contentsOf: output) == Data(contentsOf: file))
    }
}
