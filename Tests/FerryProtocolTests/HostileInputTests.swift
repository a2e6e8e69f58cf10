import FerryProtocol
import Foundation
import Testing

/// A small deterministic generator, so a failure names a seed that reproduces it.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Every way a frame can arrive damaged: flipped, cut, grown, replaced, or with JSON tokens
/// swapped for others (numbers that overflow, wrong types, nulls).
enum Mutation {
    static let tokens = ["null", "-1", "18446744073709551616", "1e308", "\"\"", "[]", "{}", "true", "\"\\u0000\"",
                         String(repeating: "9", count: 40), "\"" + String(repeating: "a", count: 300) + "\""]

    static func apply(_ bytes: Data, using rng: inout SplitMix64) -> Data {
        var data = bytes
        switch Int.random(in: 0..<6, using: &rng) {
        case 0 where !data.isEmpty:
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<data.count, using: &rng)
                data[data.startIndex + i] ^= UInt8.random(in: 1...255, using: &rng)
            }
        case 1:
            data = data.prefix(Int.random(in: 0...data.count, using: &rng))
        case 2:
            data.append(contentsOf: (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        case 3:
            data = Data((0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        default:
            // Swap one JSON value for a hostile one.
            var text = String(decoding: data, as: UTF8.self)
            if let colon = text.indices.filter({ text[$0] == ":" }).randomElement(using: &rng) {
                let valueStart = text.index(after: colon)
                let valueEnd = text[valueStart...].firstIndex { $0 == "," || $0 == "}" } ?? text.endIndex
                text.replaceSubrange(valueStart..<valueEnd, with: tokens.randomElement(using: &rng)!)
            }
            data = Data(text.utf8)
        }
        return data
    }
}

@Suite struct HostileInput {
    static let seed: UInt64 = 0xFE11_2026
    static let rounds = 3000

    /// One valid example of every control message.
    static var examples: [(kind: String, frames: [Data], decode: ([Data]) throws -> Void)] {
        func entry<M: WireMessage>(_ message: M) -> (String, [Data], ([Data]) throws -> Void) {
            (M.kind, try! message.frames(), { frames in
                let decoded = try M.decode(frames: frames)
                // Whatever decodes must survive its own round trip.
                #expect(try M.decode(frames: try decoded.frames()) == decoded)
            })
        }
        let session = SessionID(7)
        return [
            entry(request), entry(match), entry(MatchDecision(match: match, sources: [try! DeviceID("dev-b")])),
            entry(AgentHello(deviceId: try! DeviceID("dev-a"), zone: "eu")),
            entry(RelayHello(relayId: try! RelayID("r1"), endpoint: "tcp://h:7200", zone: nil)),
            entry(Heartbeat(load: 1)), entry(Welcome(heartbeatMilliseconds: 1000)),
            entry(LinkOpen(sessionId: session, requestId: request.requestId, contentId: content, address: "100.96.0.3",
                           upstream: LinkHop(address: "100.96.0.2"), downstream: LinkHop(address: "100.96.0.1"), window: 32,
                           idleTimeoutMilliseconds: 30_000)),
            entry(SessionOpen(sessionId: session, requestId: request.requestId, traceId: "t", role: .receiver, content: summary,
                              address: "a", peerAddress: "b", peerDevice: try! DeviceID("dev-b"), relayEndpoint: "tcp://r:1",
                              relays: [try! RelayID("r1")], window: 32)),
            entry(SessionFinished(sessionId: session, requestId: request.requestId, role: .receiver, outcome: .completed, payloadBytes: 5)),
            entry(Completion(requestId: request.requestId, deviceId: request.deviceId, contentId: content, size: 10,
                             sources: [SourceBytes(kind: .origin, bytes: 10)], startedAt: "s", finishedAt: "f")),
            entry(RequestRecord(requestId: request.requestId, deviceId: request.deviceId, contentId: content, server: "http://o",
                                sessions: [SessionRecord(sessionId: session, sender: try! DeviceID("dev-b"), relays: [], closed: true,
                                                         relayPayloadBytes: 9)])),
            entry(HoldingsAnnouncement(deviceId: request.deviceId, sequence: 1, contents: [content], serving: true, activeUploads: 0,
                                       zone: nil, intervalMilliseconds: 500)),
            entry(ContentWithdrawn(contentId: content, reason: "x")), entry(DeviceRevocation(deviceId: request.deviceId)), entry(GetCommand(contentId: content, output: nil)),
            entry(StatusQuery()),
            entry(SenderSilent(deviceId: try! DeviceID("dev-b"), contentId: content, sessionId: session, requestId: request.requestId)),
            entry(SourceChange(deviceId: request.deviceId, contentId: content, sources: [try! DeviceID("dev-b")], reason: .fellBehind)),
            entry(SourceTaken(deviceId: request.deviceId, contentId: content, sender: try! DeviceID("dev-b"))),
        ]
    }

    /// Mutated control messages either decode to something valid or are refused with a
    /// `WireError`: never a trap, never another kind of error.
    @Test func controlDecodersRefuseDamagedMessagesCleanly() {
        var rng = SplitMix64(state: Self.seed)
        let examples = Self.examples
        var refused = 0
        for round in 0..<Self.rounds {
            let example = examples[round % examples.count]
            var frames = example.frames
            let target = Int.random(in: 0..<frames.count + 1, using: &rng)
            if target == frames.count { frames.removeLast(Int.random(in: 0...frames.count, using: &rng)) }
            else { frames[target] = Mutation.apply(frames[target], using: &rng) }
            do {
                try example.decode(frames)
            } catch is WireError {
                refused += 1
            } catch {
                Issue.record("\(example.kind), seed \(Self.seed) round \(round): not a WireError: \(error)")
            }
        }
        #expect(refused > Self.rounds / 2)
    }

    /// Packet headers: any 0-64 bytes, including damaged real headers.
    @Test func packetHeadersRefuseDamagedBytesCleanly() {
        var rng = SplitMix64(state: Self.seed ^ 1)
        let valid = Data(PacketHeader(kind: .data, sessionId: SessionID(9), sequence: 3, chunk: 1, index: 2, length: 100).encoded)
        for round in 0..<Self.rounds * 3 {
            let bytes = round.isMultiple(of: 2) ? Mutation.apply(valid, using: &rng)
                : Data((0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            do {
                let header = try PacketHeader(decoding: bytes)
                #expect(try PacketHeader(decoding: Data(header.encoded)) == header)
            } catch is WireError {
            } catch {
                Issue.record("round \(round): not a WireError: \(error)")
            }
        }
    }

    /// The kinds each committed input is known to be bad for, and must be refused as. A body with
    /// no shape at all is bad for every kind but `status.query`, which has no fields to miss.
    static let corpusTargets: [String: Set<String>] = {
        let shapeless = Set(examples.map(\.kind)).subtracting(["status.query"])
        return [
            "array.json": shapeless, "null.json": shapeless, "empty.json": shapeless,
            "bad-unicode.json": ["agent.hello"],
            "chunk-count-overflow.json": ["session.open", "download.request"],
            "deep-nesting.json": ["download.request"],
            "huge-sizes.json": ["download.request"],
            "negative.json": ["session.finished"],
            "overflowing-sources.json": ["completion"],
            "zero-window.json": ["link.open"],
        ]
    }()

    /// The committed corpus: inputs that once broke decoders elsewhere, or nearly did. Each is
    /// refused as the kinds it targets, and decodes (or is refused) cleanly as any other.
    @Test func theCorpusIsRefusedCleanly() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Corpus")
        let files = try FileManager.default.contentsOfDirectory(at: corpus, includingPropertiesForKeys: nil).filter { $0.pathExtension == "json" }
        #expect(files.count >= 8)
        for file in files {
            let body = try Data(contentsOf: file)
            let targets = try #require(Self.corpusTargets[file.lastPathComponent], "\(file.lastPathComponent): name the kinds it is bad for")
            #expect(targets.isSubset(of: Set(Self.examples.map(\.kind))), "\(file.lastPathComponent) targets an unknown kind: \(targets)")
            for example in Self.examples {
                do {
                    try example.decode([Data("ferry/1".utf8), Data(example.kind.utf8), body])
                    if targets.contains(example.kind) {
                        Issue.record("\(file.lastPathComponent) decoded as \(example.kind), which it is known to be bad for")
                    }
                } catch is WireError {
                } catch {
                    Issue.record("\(file.lastPathComponent) as \(example.kind): not a WireError: \(error)")
                }
            }
        }
    }
}
