@testable import FerryRelay
import FerryProtocol
import FerryTrust
import Foundation
import Testing

/// The relay's decisions for one session, fed packet headers in process: what passes, what is
/// rewritten, what is dropped and why, and when the session ends.
@Suite struct SessionForwardingDecisions {
    let session = SessionID(7)
    let relay = try! RelayID("relay-1")
    let brokerKey = SigningKey.random()
    static let sender = "100.96.0.2", receiver = "100.96.0.1"

    func forwarding(window: Int = 4, quota: UInt64? = nil, downstreamIsRelay: Bool = false) throws -> SessionForwarding {
        let open = LinkOpen(sessionId: session, requestId: try RequestID("r"), contentId: try ContentID(String(repeating: "a", count: 64)),
                            address: "100.96.0.3", upstream: LinkHop(address: Self.sender), downstream: LinkHop(address: Self.receiver),
                            window: window, idleTimeoutMilliseconds: 1000, quotaBytes: quota)
        return SessionForwarding(open: open, relayId: relay, downstreamIsRelay: downstreamIsRelay)
    }

    func header(_ kind: PacketHeader.Kind, _ sequence: UInt32 = 0, length: UInt32 = 0) -> PacketHeader {
        PacketHeader(kind: kind, sessionId: session, sequence: sequence, length: length)
    }

    func data(_ sequence: UInt32, bytes: UInt32 = 1000) -> PacketHeader {
        header(.data, sequence, length: bytes + UInt32(ContentSummary.sealOverhead))
    }

    func attach(_ forwarding: inout SessionForwarding, _ side: SessionForwarding.Side, address: String? = nil, identity: String? = nil,
                bound: Data? = nil, brokerKnown: Bool = true) throws {
        let address = address ?? (side == .towardSender ? Self.sender : Self.receiver)
        let grant = SessionGrant(sessionId: session, relayId: relay, address: address, role: side == .towardSender ? .sender : .receiver,
                                 expiresAt: SessionTokens.nowMilliseconds() + 60_000)
        let token = try SessionTokens.issue(grant, with: brokerKey)
        try forwarding.authorise(LinkAttach(role: grant.role, want: [], token: token), from: side, identity: Data((identity ?? address).utf8),
                                 bound: bound, peer: nil, tokenKey: brokerKnown ? try VerifyingKey(base64: brokerKey.publicKey) : nil, secure: false,
                                 nowMilliseconds: SessionTokens.nowMilliseconds())
    }

    func isDrop(_ verdict: SessionForwarding.Verdict, _ reason: RelayDrop) -> Bool {
        if case .drop(reason, _) = verdict { true } else { false }
    }

    @Test func nothingButAnAttachPassesBeforeThatSideAttached() throws {
        var forwarding = try forwarding()
        #expect(forwarding.judge(header(.attach), from: .towardSender) == .checkAttach)
        #expect(isDrop(forwarding.judge(data(0), from: .towardSender), .unauthorised))
        #expect(isDrop(forwarding.judge(header(.credit, 4), from: .towardReceiver), .unauthorised))
        try attach(&forwarding, .towardReceiver)
        #expect(forwarding.judge(header(.credit, 4), from: .towardReceiver) == .forwardCredit(limit: 4))
        #expect(isDrop(forwarding.judge(data(0), from: .towardSender), .unauthorised), "the sender's side is still not attached")
    }

    @Test func anAttachIsTakenOnlyWithTheTokenForThatSideAndConnection() throws {
        var forwarding = try forwarding()
        #expect(throws: TrustError.badToken("for another party")) { try attach(&forwarding, .towardSender, identity: "100.96.0.9") }
        #expect(throws: TrustError.self) { try attach(&forwarding, .towardSender, address: Self.receiver) }
        #expect(!forwarding.authorised.contains(.towardSender))
        try attach(&forwarding, .towardSender)
        #expect(forwarding.authorised.contains(.towardSender))
        #expect(throws: TrustError.badToken("the sender side is attached already")) {
            try attach(&forwarding, .towardSender, bound: Data("100.96.0.8".utf8))
        }
        var early = try self.forwarding()
        #expect(throws: TrustError.badToken("no key from the broker yet")) { try attach(&early, .towardReceiver, brokerKnown: false) }
        #expect(throws: TrustError.badToken("no token")) {
            try early.authorise(LinkAttach(role: .receiver, want: [], token: nil), from: .towardReceiver, identity: Data(Self.receiver.utf8),
                                bound: nil, peer: nil, tokenKey: try VerifyingKey(base64: brokerKey.publicKey), secure: false, nowMilliseconds: 0)
        }
        #expect(early.authorised.isEmpty)
    }

    /// A device's own relay's local endpoint has no CURVE key to name who connected: it takes
    /// only the sending side, with that device's token (with keys) or its address (without).
    @Test func theLocalEndpointTakesOnlyItsOwnDevicesSendingSide() throws {
        let own = try DeviceID("dev-own"), key = try VerifyingKey(base64: brokerKey.publicKey)
        func local(_ forwarding: inout SessionForwarding, _ side: SessionForwarding.Side, device: String, secure: Bool = true,
                   identity: String? = nil) throws {
            let address = side == .towardSender ? Self.sender : Self.receiver
            let grant = SessionGrant(sessionId: session, relayId: relay, address: address, role: side == .towardSender ? .sender : .receiver,
                                     expiresAt: SessionTokens.nowMilliseconds() + 60_000, deviceId: try DeviceID(device))
            try forwarding.authorise(LinkAttach(role: grant.role, want: [], token: try SessionTokens.issue(grant, with: brokerKey)), from: side,
                                     identity: Data((identity ?? "local-1").utf8), bound: nil, peer: nil, ownDevice: own, tokenKey: key,
                                     secure: secure, nowMilliseconds: SessionTokens.nowMilliseconds())
        }
        var forwarding = try forwarding()
        #expect(throws: TrustError.badToken("the local endpoint takes the sending side only")) { try local(&forwarding, .towardReceiver, device: "dev-own") }
        #expect(throws: TrustError.self) { try local(&forwarding, .towardSender, device: "dev-friend") }
        #expect(forwarding.authorised.isEmpty)
        try local(&forwarding, .towardSender, device: "dev-own")
        #expect(forwarding.authorised == [.towardSender])

        var plain = try self.forwarding()
        #expect(throws: TrustError.badToken("for another party")) { try local(&plain, .towardSender, device: "dev-own", secure: false) }
        try local(&plain, .towardSender, device: "dev-own", secure: false, identity: Self.sender)
        #expect(plain.authorised == [.towardSender])
    }

    /// The local endpoint's ipc:// directory is made for the relay's user alone when missing (a
    /// relay without keys has made no data directory yet); an abstract socket has none.
    @Test func theLocalEndpointsDirectoryIsTheRelaysUsersAlone() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-local-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        let directory = root.appendingPathComponent("relay-1")
        try RelayLoop.prepareLocal("ipc://\(directory.path)/local.sock")
        let mode = try FileManager.default.attributesOfItem(atPath: directory.path)[.posixPermissions] as? Int
        #expect(mode == 0o700)
        try RelayLoop.prepareLocal("ipc://@ferry-test-abstract")
        try RelayLoop.prepareLocal("tcp://127.0.0.1:7201")
    }

    @Test func eachKindGoesOnlyOneWay() throws {
        var forwarding = try forwarding()
        try attach(&forwarding, .towardSender)
        try attach(&forwarding, .towardReceiver)
        #expect(isDrop(forwarding.judge(data(0), from: .towardReceiver), .wrongDirection))
        #expect(isDrop(forwarding.judge(header(.credit, 4), from: .towardSender), .wrongDirection))
        #expect(isDrop(forwarding.judge(header(.done), from: .towardSender), .wrongDirection))
        #expect(forwarding.judge(header(.done), from: .towardReceiver) == .forward(toward: .towardSender))
        #expect(forwarding.judge(header(.abort), from: .towardSender) == .forward(toward: .towardReceiver))
        var other = header(.abort)
        other.sessionId = SessionID(8)
        #expect(isDrop(forwarding.judge(other, from: .towardSender), .sessionMismatch))
    }

    /// A credit is clamped to what was forwarded plus one window, and a sender gets through no
    /// more packets than were granted, even repeating sequence numbers it was granted.
    @Test func creditIsClampedAndCountsPacketsAsWellAsSequenceNumbers() throws {
        var forwarding = try forwarding(window: 4)
        try attach(&forwarding, .towardSender)
        try attach(&forwarding, .towardReceiver)
        #expect(isDrop(forwarding.judge(data(0), from: .towardSender), .overCredit), "nothing granted yet")
        #expect(forwarding.judge(header(.credit, 1000), from: .towardReceiver) == .forwardCredit(limit: 4))
        #expect(forwarding.judge(header(.credit, 3), from: .towardReceiver) == .absorb, "no more than already granted")
        for _ in 0..<4 {
            #expect(forwarding.judge(data(0), from: .towardSender) == .forward(toward: .towardReceiver))
            forwarding.forwarded(data(0))
        }
        #expect(isDrop(forwarding.judge(data(1), from: .towardSender), .overCredit), "a replayed sequence number past the packets granted")
        #expect(isDrop(forwarding.judge(data(4), from: .towardSender), .overCredit))
        #expect(forwarding.judge(header(.credit, 100), from: .towardReceiver) == .forwardCredit(limit: 8))
        #expect(forwarding.judge(data(4), from: .towardSender) == .forward(toward: .towardReceiver))
        #expect(isDrop(forwarding.judge(data(5, bytes: 0), from: .towardSender), .malformed), "a packet no longer than its seal")
        #expect(forwarding.counters.packetsForwarded == 4 && forwarding.counters.payloadBytesForwarded == 4000)
    }

    @Test func theQuotaEndsTheSessionOnceAndDropsWhatFollows() throws {
        var forwarding = try forwarding(window: 8, quota: 2500)
        try attach(&forwarding, .towardSender)
        try attach(&forwarding, .towardReceiver)
        _ = forwarding.judge(header(.credit, 8), from: .towardReceiver)
        for sequence in UInt32(0)..<2 {
            #expect(forwarding.judge(data(sequence), from: .towardSender) == .forward(toward: .towardReceiver))
            forwarding.forwarded(data(sequence))
        }
        #expect(forwarding.judge(data(2), from: .towardSender) == .quotaExceeded)
        #expect(forwarding.closeReason == "quota-exceeded")
        #expect(isDrop(forwarding.judge(data(2), from: .towardSender), .quotaExceeded))
        #expect(forwarding.judge(data(3, bytes: 500), from: .towardSender) == .forward(toward: .towardReceiver), "what still fits passes")
    }

    @Test func aSessionEndsWhenItsQueuesEmptyAfterDoneOrWhenIdle() throws {
        var forwarding = try forwarding()
        try attach(&forwarding, .towardReceiver)
        let now = ContinuousClock.now
        #expect(forwarding.ending(at: now, queued: 0, idle: false) == nil)
        #expect(forwarding.ending(at: now, queued: 3, idle: true) == "idle")
        forwarding.forwarded(header(.done))
        #expect(forwarding.ending(at: now, queued: 3, idle: false) == nil, "what is queued gets a moment to leave")
        #expect(forwarding.ending(at: now + .seconds(3), queued: 3, idle: false) == "done")
        #expect(forwarding.ending(at: now, queued: 0, idle: false) == "done")
        forwarding.close("cancelled: x")
        #expect(forwarding.closeReason == "done", "the first reason holds")
        #expect(forwarding.counters.controlForwarded == 1)
    }

    @Test func anAttachFromAFurtherRelayPassesWithoutAToken() throws {
        var forwarding = try forwarding(downstreamIsRelay: true)
        #expect(forwarding.judge(header(.attach), from: .towardReceiver) == .forward(toward: .towardSender))
        #expect(forwarding.judge(header(.credit, 2), from: .towardReceiver) == .forwardCredit(limit: 2))
        #expect(forwarding.judge(header(.attach), from: .towardSender) == .checkAttach)
    }
}
