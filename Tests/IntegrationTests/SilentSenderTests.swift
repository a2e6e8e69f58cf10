import FerryProtocol
import Foundation
import Testing
import ZeroMQ

/// Hole 5 of the trust review, on real processes: a device that announces content and then
/// sends nothing was chosen first every time, and each receiver waited about 20 s before the
/// origin. Now a receiver whose sender is silent gets the next holder within seconds, and after
/// three silent sessions the matcher passes the device over.
@Suite(.serialized) struct SilentSenders {
    /// Says hello to the broker, keeps its dialog alive and announces `content` to the matcher,
    /// every half second, without transport keys; never answers a session.
    final class SilentDevice: @unchecked Sendable {
        // Sorts before every generated `dev-<uuid>`, so among equally loaded holders it is first.
        let id = try! DeviceID("dev-0-silent")
        private let broker: Socket, holdings: Socket
        private let lock = NSLock()
        private var stopped = false
        private let done = DispatchSemaphore(value: 0)

        init(_ stack: Stack, announcing content: ContentID) throws {
            broker = try stack.context.socket(.dealer)
            try broker.setIdentity(id.rawValue)
            try broker.connect(stack.brokerControl)
            holdings = try stack.context.socket(.pub)
            try holdings.connect(stack.holdings)
            _ = try broker.send(try AgentHello(deviceId: id, zone: nil).frames())
            Thread.detachNewThread { [self] in
                defer { done.signal() }
                var sequence: UInt64 = 0
                while !lock.withLock({ stopped }) {
                    sequence += 1
                    let announcement = HoldingsAnnouncement(deviceId: id, sequence: sequence, contents: [content], serving: true,
                                                            activeUploads: 0, zone: nil, intervalMilliseconds: 500)
                    _ = try? holdings.send([Data(HoldingsAnnouncement.topic.utf8)] + announcement.frames(), dontWait: true)
                    _ = try? broker.send(try Heartbeat(load: 0).frames(), dontWait: true)
                    while (try? broker.receive(dontWait: true)) ?? nil != nil {}  // session.open and all: ignored
                    Thread.sleep(forTimeInterval: 0.3)
                }
            }
        }

        func close() {
            lock.withLock { stopped = true }
            done.wait()
            broker.close()
            holdings.close()
        }
    }

    @Test func aSilentSenderCostsAReceiverSecondsAndIsPassedOverAfterThree() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let holder = try stack.startAgent("holder")
        let file = try stack.randomFile("silent.bin", mebibytes: 2)
        let content = try stack.publish(file)
        #expect(try stack.get(content, via: holder).ok)
        try waitForHoldings(stack, holder, hold: content)
        let silent = try SilentDevice(stack, announcing: content)
        defer { silent.close() }
        try stack.events.waitFor("the silent device to be a holder") {
            $0.topic == "holdings.updated" && $0.data["deviceId"]?.stringValue == silent.id.rawValue
        }

        for round in 1...SenderSilent.limit {
            // Patient: the download waits for Ferry's plan, never falls back on a deadline.
            let receiver = try stack.startAgent("r\(round)", extra: ["--plan-deadline-ms", "60000"])
            let started = Date()
            let output = stack.directory.appendingPathComponent("r\(round).bin")
            let got = try stack.get(content, via: receiver, output: output)
            let seconds = Date().timeIntervalSince(started)
            // From real holders (the first, receivers of earlier rounds: each idle one sends a
            // stripe, and the silent device's stripe goes to another), never the origin.
            #expect(got.ok && got.sources.allSatisfy { $0.kind == .peer && $0.device != silent.id },
                    "round \(round): \(got.sources) \(got.error ?? "")")
            #expect(try Data(contentsOf: output) == Data(contentsOf: file))
            let request = try #require(got.requestId).rawValue
            // The silent device's stripe; another may have been handed on (`slower-stripe`).
            let repathed = try stack.events.waitFor("the silent sender's session to get a new path") {
                $0.topic == "session.repathed" && $0.requestId == request && $0.data["previousSender"]?.stringValue == silent.id.rawValue
            }
            #expect(repathed.data["reason"]?.stringValue == SenderSilent.reason)
            // Within the 5 s of patience and the second new path, not the link's 20 s idle timeout.
            #expect(seconds < 12, "round \(round) took \(seconds) s")
            print("silent sender, round \(round): served by the next holder in \(String(format: "%.1f", seconds)) s")
        }
        let excluded = try stack.events.waitFor(topic: "sender.excluded")
        #expect(excluded.data["deviceId"]?.stringValue == silent.id.rawValue)

        // The fourth receiver is matched to the holder straight away.
        let fourth = try stack.startAgent("r4", extra: ["--plan-deadline-ms", "60000"])
        let got = try stack.get(content, via: fourth)
        #expect(got.ok && got.sources.allSatisfy { $0.kind == .peer && $0.device != silent.id }, "\(got.sources)")
        let found = try stack.events.waitFor(topic: "match.found", requestId: try #require(got.requestId).rawValue)
        #expect(found.data["candidates"].map { "\($0)" }?.contains(silent.id.rawValue) == false, "\(found.data)")
        #expect(stack.events.matching("session.repathed", requestId: try #require(got.requestId).rawValue).isEmpty)
    }
}
