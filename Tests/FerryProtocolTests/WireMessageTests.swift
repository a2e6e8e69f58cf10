import FerryProtocol
import Foundation
import Testing

let content = try! ContentID(String(repeating: "ab", count: 32))
let summary = ContentSummary(contentId: content, size: 10 * 262_144 + 5, chunkSize: 262_144, packetSize: 65_536)
let request = DownloadRequest(requestId: try! RequestID("req-1"), deviceId: try! DeviceID("dev-a"), content: summary,
                              server: "http://127.0.0.1:7080", requestedAt: "2026-11-24T10:00:00.000000Z")
let match = MatchRequest(request: request, traceId: "trace-1", attempt: 2)
let session = SessionID(0x0123_4567_89ab_cdef)

func roundTrip<M: WireMessage>(_ message: M) throws {
    let frames = try message.frames()
    #expect(frames.count == 3)
    #expect(String(decoding: frames[0], as: UTF8.self) == "ferry/1")
    #expect(String(decoding: frames[1], as: UTF8.self) == M.kind)
    #expect(try M.decode(frames: frames) == message)
}

@Suite struct WireMessageRoundTrips {
    @Test func pipeline() throws {
        try roundTrip(request)
        try roundTrip(match)
        try roundTrip(MatchDecision(match: match, sources: [try DeviceID("dev-b")]))
        try roundTrip(MatchDecision(match: match, sources: [], reason: "no-holder"))
        let b = try DeviceID("dev-b"), c = try DeviceID("dev-c")
        try roundTrip(MatchDecision(match: match, sources: [b, c], stripes: [[b, c], [c, b]]))
        try roundTrip(SenderSilent(deviceId: try DeviceID("dev-b"), contentId: content, sessionId: session, requestId: request.requestId))
        for reason in SourceChange.Reason.allCases {
            try roundTrip(SourceChange(deviceId: try DeviceID("dev-a"), contentId: content, sources: [try DeviceID("dev-b"), try DeviceID("dev-c")],
                                       reason: reason))
        }
        try roundTrip(SourceChange(deviceId: try DeviceID("dev-a"), contentId: content, sources: [], reason: .upstreamMoved))
        try roundTrip(SourceTaken(deviceId: try DeviceID("dev-a"), contentId: content, sender: try DeviceID("dev-b")))
        try roundTrip(SourceTaken(deviceId: try DeviceID("dev-a"), contentId: content, sender: nil))
    }

    /// A device cannot be its own source.
    @Test func aSourceTakenNamingTheDeviceItselfIsRefused() throws {
        let a = try DeviceID("dev-a")
        let frames = Envelope(kind: SourceTaken.kind, body: try JSONCoding.encoder.encode(SourceTaken(deviceId: a, contentId: content, sender: a))).frames
        #expect(throws: WireError.self) { try SourceTaken.decode(frames: frames) }
    }

    /// A change the plan could not have made: an unknown reason, too many sources, or the
    /// device offered to itself.
    @Test func aSourceChangeOutsideThePlansRulesIsRefused() throws {
        let a = try DeviceID("dev-a")
        var unknown = SourceChange(deviceId: a, contentId: content, sources: [], reason: .fellBehind)
        unknown.reason = "whim"
        var many = SourceChange(deviceId: a, contentId: content, sources: [], reason: .fellBehind)
        many.sources = try ["dev-b", "dev-c", "dev-d", "dev-e"].map(DeviceID.init)
        let itself = SourceChange(deviceId: a, contentId: content, sources: [a], reason: .slowUplink)
        for change in [unknown, many, itself] {
            let frames = Envelope(kind: SourceChange.kind, body: try JSONCoding.encoder.encode(change)).frames
            #expect(throws: WireError.self) { try SourceChange.decode(frames: frames) }
        }
    }

    /// Stripes cover every chunk once, as evenly as whole chunks allow, and a stripe or a
    /// striped decision that could not be is refused.
    @Test func stripesCoverEveryChunkOnceAndImpossibleOnesAreRefused() throws {
        for (chunks, count) in [(10, 3), (11, 2), (256, 4), (5, 5), (4097, 16)] {
            let ranges = (0..<count).map { Stripe($0, of: count).chunks(of: chunks) }
            #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == chunks)
            #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            #expect(ranges.allSatisfy { $0.count == chunks / count || $0.count == chunks / count + 1 })
        }
        let b = try DeviceID("dev-b")
        func open(_ stripe: Stripe) -> SessionOpen {
            SessionOpen(sessionId: session, requestId: request.requestId, traceId: "t", role: .receiver, content: summary, address: "100.96.0.1",
                        peerAddress: "100.96.0.2", peerDevice: b, relayEndpoint: "tcp://127.0.0.1:7200", relays: [], window: 32, stripe: stripe)
        }
        // `summary` has 11 chunks.
        for stripe in [Stripe(2, of: 2), Stripe(-1, of: 2), Stripe(0, of: 1), Stripe(0, of: 17), Stripe(0, of: 12)] {
            let frames = Envelope(kind: SessionOpen.kind, body: try JSONCoding.encoder.encode(open(stripe))).frames
            #expect(throws: WireError.self) { try SessionOpen.decode(frames: frames) }
        }
        for stripes in [[[b]], [[b], []], Array(repeating: [b], count: 17)] {
            let decision = MatchDecision(match: match, sources: [b], stripes: stripes)
            let frames = Envelope(kind: MatchDecision.kind, body: try JSONCoding.encoder.encode(decision)).frames
            #expect(throws: WireError.self) { try MatchDecision.decode(frames: frames) }
        }
    }

    @Test func brokerDialog() throws {
        try roundTrip(AgentHello(deviceId: try DeviceID("dev-a"), zone: "eu"))
        try roundTrip(AgentHello(deviceId: try DeviceID("dev-a"), zone: nil, forwarder: try RelayID("a-fwd")))
        try roundTrip(RelayHello(relayId: try RelayID("relay-1"), endpoint: "tcp://10.0.0.1:7200", zone: nil))
        try roundTrip(RelayHello(relayId: try RelayID("a-fwd"), endpoint: "tcp://10.0.0.11:7200", zone: nil, forwardsFor: try DeviceID("dev-a")))
        try roundTrip(Welcome(heartbeatMilliseconds: 1000))
        try roundTrip(Heartbeat(load: 3))
        try roundTrip(LinkOpen(sessionId: session, requestId: request.requestId, contentId: content, address: "100.96.0.3",
                               upstream: LinkHop(address: "100.96.0.2"), downstream: LinkHop(address: "100.96.0.9", endpoint: "tcp://r2:7200"),
                               window: 32, idleTimeoutMilliseconds: 30_000))
        try roundTrip(LinkReady(sessionId: session, address: "100.96.0.3"))
        var counters = LinkCounters()
        counters.packetsForwarded = 7
        counters.payloadBytesForwarded = 458_752
        try roundTrip(LinkClosed(sessionId: session, address: "100.96.0.3", reason: "done", counters: counters))
        try roundTrip(SessionOpen(sessionId: session, requestId: request.requestId, traceId: "t", role: .receiver, content: summary,
                                  address: "100.96.0.1", peerAddress: "100.96.0.2", peerDevice: try DeviceID("dev-b"),
                                  relayEndpoint: "tcp://127.0.0.1:7200", relays: [try RelayID("relay-1")], window: 32))
        try roundTrip(SessionOpen(sessionId: session, requestId: request.requestId, traceId: "t", role: .sender, content: summary,
                                  address: "100.96.0.2", peerAddress: "100.96.0.1", peerDevice: try DeviceID("dev-a"),
                                  relayEndpoint: "tcp://127.0.0.1:7200", relays: [try RelayID("relay-1")], window: 32, stripe: Stripe(1, of: 3)))
        try roundTrip(OriginDirective(requestId: request.requestId, traceId: "t", content: summary, reason: "no-holder"))
        try roundTrip(OriginDirective(requestId: request.requestId, traceId: "t", content: summary, reason: "relay-lost; no other holder",
                                      stripe: Stripe(0, of: 2)))
        try roundTrip(SessionFinished(sessionId: session, requestId: request.requestId, role: .sender, outcome: .completed, payloadBytes: 9))
        try roundTrip(SessionFinished(sessionId: session, requestId: request.requestId, role: .receiver, outcome: .failed, payloadBytes: 0,
                                      reason: "corrupt-chunks", rejectedChunks: 1))
        try roundTrip(DeviceRevocation(deviceId: try DeviceID("dev-b")))
        try roundTrip(SessionCancel(sessionId: session, reason: "relay-lost"))
        try roundTrip(SessionCancel(sessionId: session, reason: "relay-lost", newPathFollows: true))
    }

    @Test func accountingAndHoldings() throws {
        try roundTrip(Completion(requestId: request.requestId, deviceId: request.deviceId, contentId: content, size: summary.size,
                                 sources: [SourceBytes(kind: .peer, device: try DeviceID("dev-b"), sessionId: session, bytes: 100),
                                           SourceBytes(kind: .origin, bytes: summary.size - 100)],
                                 startedAt: "a", finishedAt: "b"))
        try roundTrip(RequestRecord(requestId: request.requestId, deviceId: request.deviceId, contentId: content, server: "http://o",
                                    sessions: [SessionRecord(sessionId: session, sender: try DeviceID("dev-b"), relays: [try RelayID("r")],
                                                             closed: true, relayPayloadBytes: 42),
                                               SessionRecord(sessionId: SessionID(8), sender: try DeviceID("dev-d"), relays: [try RelayID("d-fwd")],
                                                             closed: true, relayPayloadBytes: 5, senderPayloadBytes: 5, forwardedBySender: true),
                                               SessionRecord(sessionId: SessionID(7), sender: try DeviceID("dev-c"), relays: [], closed: false,
                                                             senderPayloadBytes: 3)]))
        try roundTrip(HoldingsAnnouncement(deviceId: request.deviceId, sequence: 9, contents: [content], serving: true, activeUploads: 1,
                                           zone: nil, intervalMilliseconds: 2000))
        try roundTrip(HoldingsAnnouncement(deviceId: request.deviceId, sequence: 10, contents: [], serving: true, activeUploads: 1,
                                           zone: "z", intervalMilliseconds: 2000, partial: [PartialHolding(contentId: content, chunks: 3, of: 8)]))
        try roundTrip(GetCommand(contentId: content, output: "/tmp/x"))
        try roundTrip(GetProgress(requestId: request.requestId, receivedBytes: 1, totalBytes: 2, source: "origin"))
        try roundTrip(GetResult(requestId: nil, contentId: content, ok: false, error: "no", path: nil, sources: [], seconds: 0))
        try roundTrip(StatusQuery())
        try roundTrip(StatusReport(service: "relay", id: "r", startedAt: "t", counters: ["links": 2, "drops": .object(["x": 1])]))
    }

    @Test func httpBodiesAndEvents() throws {
        let fulfilment = Fulfilment(requestId: request.requestId, deviceId: request.deviceId, contentId: content, size: 5,
                                    bytesFromPeers: 5, bytesFromOrigin: 0, sources: [], verification: .matched, recordedAt: "t")
        #expect(try JSONCoding.decoder.decode(Fulfilment.self, from: JSONCoding.encoder.encode(fulfilment)) == fulfilment)
        let ask = DeviceRequest(requestId: nil, deviceId: request.deviceId, contentId: content)
        #expect(try JSONCoding.decoder.decode(DeviceRequest.self, from: JSONCoding.encoder.encode(ask)) == ask)
        let event = FerryEvent(topic: "match.found", time: Timestamp.now(), publisher: "matcher", seq: 4, requestId: "req-1",
                               sessionId: nil, data: ["source": "dev-b", "n": 3, "ok": true, "list": .array(["a"])])
        let frames = try event.frames
        #expect(String(decoding: frames[0], as: UTF8.self) == "match.found")
        #expect(try FerryEvent.decode(frames: frames) == event)
    }
}

@Suite struct PipelineNotices {
    /// Each stage tells a notice from a request the same way, and passes it on unchanged.
    @Test func noticesAreToldFromRequests() throws {
        let withdrawal = ContentWithdrawn(contentId: request.content.contentId, reason: "x")
        let revocation = DeviceRevocation(deviceId: request.deviceId)
        #expect(PipelineNotice(frames: try withdrawal.frames()) == .withdrawn(withdrawal))
        #expect(PipelineNotice(frames: try revocation.frames()) == .revoked(revocation))
        #expect(try PipelineNotice.revoked(revocation).frames() == revocation.frames())
        #expect(PipelineNotice(frames: try request.frames()) == nil)
        var damaged = try withdrawal.frames()
        damaged[2] = Data("{}".utf8)
        #expect(PipelineNotice(frames: damaged) == nil)
        #expect(PipelineNotice(frames: Array(try revocation.frames().prefix(2))) == nil)
    }
}

@Suite struct BadInputIsRefused {
    @Test func wrongVersionFrame() throws {
        var frames = try request.frames()
        frames[0] = Data("ferry/9".utf8)
        #expect(throws: WireError.unsupportedVersion("ferry/9")) { try DownloadRequest.decode(frames: frames) }
    }

    @Test func wrongFrameCount() throws {
        let frames = try request.frames()
        #expect(throws: WireError.self) { try DownloadRequest.decode(frames: Array(frames.prefix(2))) }
    }

    @Test func otherKind() throws {
        #expect(throws: WireError.unknownKind("heartbeat")) { try DownloadRequest.decode(frames: try Heartbeat(load: 0).frames()) }
    }

    @Test func notJSONAndMissingFields() throws {
        let notJSON = [Data("ferry/1".utf8), Data("download.request".utf8), Data("{not json".utf8)]
        #expect(throws: WireError.self) { try DownloadRequest.decode(frames: notJSON) }
        let missing = [Data("ferry/1".utf8), Data("download.request".utf8), Data(#"{"requestId":"r"}"#.utf8)]
        do {
            _ = try DownloadRequest.decode(frames: missing)
            Issue.record("a request without a device decoded")
        } catch let error as WireError {
            #expect(error.reason == "malformed")
        }
    }

    @Test func invalidFieldValues() throws {
        var bad = request
        bad.server = "ftp://nowhere"
        #expect(throws: WireError.self) { try DownloadRequest.decode(frames: try bad.frames()) }
        bad = request
        bad.content.chunkSize = 100_000  // not a multiple of the packet size
        #expect(throws: WireError.self) { try DownloadRequest.decode(frames: try bad.frames()) }
        let body = String(decoding: try request.frames()[2], as: UTF8.self).replacingOccurrences(of: "dev-a", with: "dev a/..")
        #expect(throws: WireError.self) { try DownloadRequest.decode(frames: [Data("ferry/1".utf8), Data("download.request".utf8), Data(body.utf8)]) }
        let negative = SessionFinished(sessionId: SessionID(1), requestId: request.requestId, role: .receiver, outcome: .failed,
                                       payloadBytes: 0, rejectedChunks: -1)
        #expect(throws: WireError.self) { try SessionFinished.decode(frames: try negative.frames()) }
        let endless = RequestRecord(requestId: request.requestId, deviceId: request.deviceId, contentId: request.content.contentId,
                                    server: "http://o", sessions: Array(repeating: SessionRecord(sessionId: SessionID(1), sender: request.deviceId,
                                                                                                 relays: [], closed: true), count: 65))
        #expect(throws: WireError.self) { try RequestRecord.decode(frames: try endless.frames()) }
        let withTags = SessionFinished(sessionId: SessionID(1), requestId: request.requestId, role: .receiver, outcome: .failed,
                                       payloadBytes: 0, rejectedChunks: 1, unopenedChunks: 2)
        #expect(throws: WireError.self) { try SessionFinished.decode(frames: try withTags.frames()) }
        // Hole 5 of the trust review: every field the matcher or broker computes or ranks with is
        // bounded, so no announcement traps it (`interval * 3`) or wins every ranking.
        for (interval, uploads, zone) in [(0, 0, nil), (Int.max, 0, nil), (Int.max / 3 + 1, 0, nil), (1000, -1, nil), (1000, Int.max, nil),
                                          (1000, 0, String(repeating: "z", count: 129))] as [(Int, Int, String?)] {
            let hostile = HoldingsAnnouncement(deviceId: request.deviceId, sequence: 1, contents: [content], serving: true,
                                               activeUploads: uploads, zone: zone, intervalMilliseconds: interval)
            #expect(throws: WireError.self) { try HoldingsAnnouncement.decode(frames: try hostile.frames()) }
        }
        // A partial holding the matcher would rank by: more chunks than the content has, or none of none.
        for (chunks, of) in [(9, 8), (-1, 8), (0, 0)] {
            let hostile = HoldingsAnnouncement(deviceId: request.deviceId, sequence: 1, contents: [], serving: true, activeUploads: 0,
                                               zone: nil, intervalMilliseconds: 1000, partial: [PartialHolding(contentId: content, chunks: chunks, of: of)])
            #expect(throws: WireError.self) { try HoldingsAnnouncement.decode(frames: try hostile.frames()) }
        }
        for load in [-1, Int.max] {
            #expect(throws: WireError.self) { try Heartbeat.decode(frames: try Heartbeat(load: load).frames()) }
        }
    }

    @Test func completionsThatCannotAddUpAreRefused() throws {
        let device = try DeviceID("dev-a")
        func completion(_ sources: [SourceBytes], size: UInt64 = 1) -> Completion {
            Completion(requestId: try! RequestID("r"), deviceId: device, contentId: content, size: size, sources: sources, startedAt: "s", finishedAt: "f")
        }
        // Sums that overflow, sources larger than the content, and totals that don't match.
        #expect(throws: WireError.self) { try completion([SourceBytes(kind: .origin, bytes: .max), SourceBytes(kind: .origin, bytes: 2)]).validate() }
        #expect(throws: WireError.self) { try completion([SourceBytes(kind: .origin, bytes: 1 << 63)], size: 1 << 63).validate() }
        #expect(throws: WireError.self) { try completion([SourceBytes(kind: .origin, bytes: 2)]).validate() }
        #expect(throws: WireError.self) { try completion([SourceBytes(kind: .peer, bytes: 1)]).validate() }  // a peer without a device
        #expect(throws: Never.self) { try completion([SourceBytes(kind: .local, bytes: 1)]).validate() }
    }

    @Test func oversizedBody() throws {
        let huge = [Data("ferry/1".utf8), Data("download.request".utf8), Data(count: Envelope.maxBodyBytes + 1)]
        #expect(throws: WireError.tooLarge(Envelope.maxBodyBytes + 1, limit: Envelope.maxBodyBytes)) { try DownloadRequest.decode(frames: huge) }
    }

    @Test func identifiers() throws {
        #expect(throws: WireError.self) { try ContentID("ABC") }
        #expect(throws: WireError.self) { try ContentID(String(repeating: "A", count: 64)) }
        #expect(throws: WireError.self) { try DeviceID("") }
        #expect(throws: WireError.self) { try DeviceID(String(repeating: "x", count: 129)) }
        #expect(throws: WireError.self) { try SessionID(hex: "xyz") }
        #expect(try SessionID(hex: session.hex) == session)
        #expect(SessionID(1).hex == "0000000000000001")
    }
}

@Suite struct PacketHeaders {
    @Test func roundTrip() throws {
        let header = PacketHeader(kind: .data, sessionId: session, sequence: 77, chunk: 3, index: 2, flags: 1, length: 65_536)
        let bytes = header.encoded
        #expect(bytes.count == PacketHeader.size)
        #expect(bytes[0] == 0x46 && bytes[1] == 0x50)
        #expect(try bytes.withUnsafeBytes { try PacketHeader(decoding: $0) } == header)
    }

    @Test func refusesBadHeaders() throws {
        var bytes = PacketHeader(kind: .credit, sessionId: session, sequence: 5).encoded
        #expect(throws: WireError.self) { try Array(bytes.prefix(31)).withUnsafeBytes { try PacketHeader(decoding: $0) } }
        bytes[3] = 99
        #expect(throws: WireError.unknownKind("packet kind 99")) { try bytes.withUnsafeBytes { try PacketHeader(decoding: $0) } }
        bytes[0] = 0
        #expect(throws: WireError.self) { try bytes.withUnsafeBytes { try PacketHeader(decoding: $0) } }
    }
}

@Suite struct ContentGeometry {
    @Test func chunksAndPackets() {
        #expect(summary.chunkCount == 11)
        #expect(summary.chunkLength(10) == 5)
        #expect(summary.packetCount(inChunk: 0) == 4)
        #expect(summary.packetCount(inChunk: 10) == 1)
        #expect(summary.packetLength(chunk: 10, index: 0) == 5)
        #expect(summary.chunkOffset(2) == 524_288)
    }

    @Test func geometryLimits() {
        var tiny = summary
        tiny.packetSize = 256
        tiny.chunkSize = 256
        #expect(throws: WireError.self) { try tiny.validate() }
        var tooManyPackets = summary
        tooManyPackets.packetSize = 512
        tooManyPackets.chunkSize = 64 << 20  // 131,072 packets: more than a 16-bit index can number
        #expect(throws: WireError.self) { try tooManyPackets.validate() }
        var largest = summary
        largest.packetSize = 1024
        largest.chunkSize = 32 << 20
        #expect(throws: Never.self) { try largest.validate() }
    }

    @Test func chunkRuns() {
        #expect(ChunkRange.runs(of: [0, 1, 2, 5, 6, 9]) == [ChunkRange(0, 3), ChunkRange(5, 7), ChunkRange(9, 10)])
        #expect(ChunkRange.runs(of: []) == [])
    }
}

@Suite struct OriginAPIBodies {
    @Test func anAuditEntryRoundTripsAndNamesItsEvent() throws {
        let entry = AuditEntry(seq: 7, at: Timestamp.now(), action: .deviceEnrolled, subject: "dev-a", actor: "token:abc", address: "10.0.0.9",
                               detail: ["kind": "device", "tokenId": "abc"])
        #expect(try JSONCoding.decoder.decode(AuditEntry.self, from: try JSONCoding.encoder.encode(entry)) == entry)
        for action in AuditAction.allCases { #expect(action.topic.rawValue == action.rawValue) }
    }
}
