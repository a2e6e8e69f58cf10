import FerryContent
import FerryLink
import FerryProtocol
import FerryTrust
import Foundation
import ZeroMQ

/// One decoder under fuzz: its name (FERRY_FUZZ_TARGET), the inputs it starts from, and what it
/// does with one input. Decoders refuse bad input by throwing, which passes; only a trap fails.
struct FuzzTarget: Sendable {
    let name: String
    let seeds: @Sendable (_ corpus: [Data]) throws -> [Data]
    let run: @Sendable (UnsafeRawBufferPointer) -> Void
}

/// Every decoder of bytes that arrive from the network. Adding one is one line here; Scripts/fuzz
/// refuses to run while a control message kind in Shared/ has no `envelope.` target. A trailing
/// closure is what the receiver does next with bytes the message carried.
let targets: [FuzzTarget] = [
    // Pipeline
    envelope(Example.request), envelope(Example.match),
    envelope(MatchDecision(match: Example.match, sources: [Example.peer], reason: nil)),
    envelope(ContentWithdrawn(contentId: Example.content, reason: "withdrawn by the publisher")),
    envelope(DeviceRevocation(deviceId: Example.device)),
    // Broker dialog
    envelope(AgentHello(deviceId: Example.device, zone: "eu")),
    envelope(RelayHello(relayId: Example.relay, endpoint: "tcp://127.0.0.1:7200", zone: nil)),
    envelope(RelayDraining(relayId: Example.relay, sessions: 2, deadlineMilliseconds: 30_000)),
    envelope(Welcome(heartbeatMilliseconds: 1000, tokenKey: Example.key.publicKey)) { welcome in
        _ = welcome.tokenKey.map { try? VerifyingKey(base64: $0) }
    },
    envelope(Heartbeat(load: 3)),
    envelope(LinkOpen(sessionId: Example.session, requestId: Example.request.requestId, contentId: Example.content,
                      address: "100.96.0.3", upstream: LinkHop(address: "100.96.0.2"),
                      downstream: LinkHop(address: "100.96.0.9", endpoint: "tcp://127.0.0.1:7201"), window: 32,
                      idleTimeoutMilliseconds: 30_000, quotaBytes: 1 << 30, bytesPerSecond: 1 << 20)),
    envelope(LinkReady(sessionId: Example.session, address: "100.96.0.3")),
    envelope(LinkClosed(sessionId: Example.session, address: "100.96.0.3", reason: "done", counters: Example.counters)),
    envelope(SessionOpen(sessionId: Example.session, requestId: Example.request.requestId, traceId: "trace-1", role: .receiver,
                         content: Example.summary, address: "100.96.0.1", peerAddress: "100.96.0.2", peerDevice: Example.peer,
                         relayEndpoint: "tcp://127.0.0.1:7200", relays: [Example.relay], window: 32, token: Example.token)),
    envelope(OriginDirective(requestId: Example.request.requestId, traceId: "trace-1", content: Example.summary, reason: "no-holder")),
    envelope(SessionFinished(sessionId: Example.session, requestId: Example.request.requestId, role: .receiver, outcome: .failed,
                             payloadBytes: 9, reason: "corrupt chunks", rejectedChunks: 2)),
    envelope(SessionCancel(sessionId: Example.session, reason: "relay-lost", newPathFollows: true)),
    // Holdings and accounting
    envelope(HoldingsAnnouncement(deviceId: Example.device, sequence: 9, contents: [Example.content], serving: true,
                                  activeUploads: 1, zone: "eu", intervalMilliseconds: 2000)),
    envelope(Completion(requestId: Example.request.requestId, deviceId: Example.device, contentId: Example.content,
                        size: Example.summary.size, sources: Example.sources, startedAt: "a", finishedAt: "b")),
    envelope(RequestRecord(requestId: Example.request.requestId, deviceId: Example.device, contentId: Example.content,
                           server: "http://127.0.0.1:7080",
                           sessions: [SessionRecord(sessionId: Example.session, sender: Example.peer, relays: [Example.relay],
                                                    closed: true, relayPayloadBytes: 42, senderPayloadBytes: 42)])),
    // Agent control and status
    envelope(GetCommand(contentId: Example.content, output: "/tmp/x")),
    envelope(GetProgress(requestId: Example.request.requestId, receivedBytes: 1, totalBytes: 2, source: "origin")),
    envelope(GetResult(requestId: Example.request.requestId, contentId: Example.content, ok: true, error: nil, path: "/tmp/x",
                       sources: Example.sources, seconds: 1.25)),
    envelope(StatusQuery()),
    envelope(StatusReport(service: "relay", id: "relay-1", startedAt: "t", counters: ["links": 2, "drops": .object(["x": 1])])),

    packetHeader, linkFrame, event, manifest,

    // HTTP bodies
    json(DeviceRequest(requestId: Example.request.requestId, deviceId: Example.device, contentId: Example.content)),
    json(Example.fulfilment),
    json(FulfilmentAck(requestId: Example.request.requestId, duplicate: true)),
    json(ContentWithdrawalResult(contentId: Example.content, ferryTold: true)),
    json(OriginStats(fulfilments: 3, bytesFromPeers: 100, bytesFromOrigin: 50)),
    json(ErrorBody(reason: "unknown-content", error: "no such content")),
    // Enrolment and keys, as the origin and an agent read them
    json(DeviceEnrolment(deviceId: Example.device, signingKey: Example.key.publicKey, agreementKey: Example.key.publicKey, token: "FJT1.0a1b2c3d4e5f.c")),
    json(EnrolledDevice(deviceId: Example.device, signingKey: Example.key.publicKey, agreementKey: Example.key.publicKey,
                        enrolledAt: "t", revokedAt: nil)),
    json(WrappedContentKey(contentId: Example.content, ephemeralKey: Example.key.publicKey, sealedKey: "AAAA")),
    // The token a party attaches with, as a relay checks it
    json(Example.token) { token in
        _ = try? SessionTokens.check(token, key: Example.verifyingKey, session: Example.grant.sessionId, relay: Example.grant.relayId,
                                     address: Example.grant.address, role: Example.grant.role, nowMilliseconds: Example.now)
    },
]

/// `[version, kind, JSON]` read by `Envelope(frames:)` and decoded as `M`, as every service
/// reads control messages.
func envelope<M: WireMessage>(_ example: M, then use: @escaping @Sendable (M) -> Void = { _ in }) -> FuzzTarget {
    FuzzTarget(name: "envelope.\(M.kind)", seeds: { corpus in
        try [Frames.join(example.frames())] + corpus.map { Frames.join([Data(Envelope.version.utf8), Data(M.kind.utf8), $0]) }
    }, run: { input in
        guard let message = try? Envelope(frames: Frames.split(input)).decode(M.self) else { return }
        expectRoundTrip(message) { try M.decode(frames: $0.frames()) }
        use(message)
    })
}

/// A JSON body as the origin, reporter, CLI or a relay reads one.
func json<T: Codable & Equatable & Sendable>(_ example: T, then use: @escaping @Sendable (T) -> Void = { _ in }) -> FuzzTarget {
    @Sendable func decode(_ data: Data) throws -> T { try JSONCoding.decoder.decode(T.self, from: data) }
    return FuzzTarget(name: "json.\(T.self)", seeds: { corpus in
        try [JSONCoding.encoder.encode(example)] + corpus
    }, run: { input in
        guard let value = try? decode(Data(input)) else { return }
        expectRoundTrip(value) { try decode(JSONCoding.encoder.encode($0)) }
        use(value)
    })
}

let packetHeader = FuzzTarget(name: "packet-header", seeds: { _ in
    [PacketHeader.Kind.data, .attach, .credit, .done, .abort].map { kind in
        Data(PacketHeader(kind: kind, sessionId: Example.session, sequence: 77, chunk: 3, index: 2, flags: 1, length: 512).encoded)
    }
}, run: { input in
    guard let header = try? PacketHeader(decoding: input) else { return }
    expectRoundTrip(header) { try PacketHeader(decoding: Data($0.encoded)) }
})

/// `[header, payload?]` as a link reads it off its socket, then the attach payload within.
let linkFrame = FuzzTarget(name: "link-frame", seeds: { corpus in
    let packets = [
        LinkFrame.messages(PacketHeader(kind: .data, sessionId: Example.session, sequence: 5, chunk: 1, index: 2),
                           payload: Data(repeating: 0x5a, count: 512)),
        LinkFrame.attach(Example.session, Example.attach),
        LinkFrame.messages(PacketHeader(kind: .credit, sessionId: Example.session, sequence: 64)),
        LinkFrame.messages(PacketHeader(kind: .done, sessionId: Example.session)),
        LinkFrame.messages(PacketHeader(kind: .abort, sessionId: Example.session), payload: Data("gave up".utf8)),
    ] + corpus.map { LinkFrame.messages(PacketHeader(kind: .attach, sessionId: Example.session), payload: $0) }
    return packets.map { Frames.join($0.map(\.data)) }
}, run: { input in
    guard let frame = try? LinkFrame(frames: Frames.split(input).map { Message($0) }[...]) else { return }
    let payload = frame.payload?.data
    expectRoundTrip(frame.header) { try LinkFrame(frames: LinkFrame.messages($0, payload: payload)[...]).header }
    guard let attach = try? frame.decodeAttach() else { return }
    expectRoundTrip(attach) { try LinkFrame(frames: LinkFrame.attach(frame.header.sessionId, $0)[...]).decodeAttach() }
})

/// `[topic, JSON]` as the event bus's subscribers read it.
let event = FuzzTarget(name: "event", seeds: { corpus in
    try [Frames.join(Example.event.frames)] + corpus.map { Frames.join([Data(EventTopic.matchFound.rawValue.utf8), $0]) }
}, run: { input in
    guard let event = try? FerryEvent.decode(frames: Frames.split(input)) else { return }
    expectRoundTrip(event) { try FerryEvent.decode(frames: $0.frames) }
})

/// A manifest as a device fetches it from the origin: shape, root hash, then signature.
let manifest = FuzzTarget(name: "manifest", seeds: { corpus in
    try [ManifestCodec.encode(Example.manifest), ManifestCodec.encode(ManifestCodec.sign(Example.manifest, with: Example.key))] + corpus
}, run: { input in
    guard let manifest = try? ManifestCodec.decode(Data(input)) else { return }
    try? ManifestCodec.verifySignature(manifest, publicKey: Example.key.publicKey)
    expectRoundTrip(manifest) { try ManifestCodec.decode(ManifestCodec.encode($0)) }
})

/// Whatever decodes must encode and decode again to an equal value (as the property tests in
/// FerryProtocolTests demand): a decoder that accepts what its own encoder cannot reproduce is
/// a bug too, and a trap is how libFuzzer hears of it.
func expectRoundTrip<T: Equatable>(_ value: T, _ again: (T) throws -> T) {
    let copy: T
    do {
        copy = try again(value)
    } catch {
        fatalError("decoded \(value), but its encoding does not decode: \(error)")
    }
    guard copy == value else { fatalError("decoded \(value), but its encoding decodes to \(copy)") }
}
