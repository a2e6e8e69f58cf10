import FerryProtocol
import Foundation

/// Decides what a device's completion is worth. Devices report their own byte counts, which a
/// device could inflate; the broker's record (who was to send, through which relay) and the
/// relay's count of payload bytes it carried are what the ledger believes.
public enum FulfilmentCheck {
    public enum Verdict: Equatable, Sendable {
        /// The broker's closing record has not arrived yet.
        case wait
        case record(Fulfilment, server: String)
        case reject(String)
    }

    public static func evaluate(_ completion: Completion, record: RequestRecord?, waitedLongEnough: Bool,
                                now: String = Timestamp.now()) -> Verdict {
        if let record, record.deviceId != completion.deviceId || record.contentId != completion.contentId {
            return .reject("completion names device \(completion.deviceId) and content \(completion.contentId.short)… but the request was for \(record.deviceId) and \(record.contentId.short)…")
        }
        let originBytes = completion.sources.filter { $0.kind == .origin }.reduce(UInt64(0)) { $0 + $1.bytes }
        let peerSources = completion.sources.filter { $0.kind == .peer }
        let claimedPeerBytes = peerSources.reduce(UInt64(0)) { $0 + $1.bytes }

        func fulfilment(peerBytes: UInt64, sources: [SourceBytes], verification: Verification) -> Fulfilment {
            Fulfilment(requestId: completion.requestId, deviceId: completion.deviceId, contentId: completion.contentId,
                       size: completion.size, bytesFromPeers: peerBytes, bytesFromOrigin: originBytes,
                       sources: sources, verification: verification, recordedAt: now)
        }

        guard let record else {
            // Only the broker's record says which server to deliver to; a device's word would let
            // any device fill the outbox and make the reporter post anywhere.
            return waitedLongEnough ? .reject("the broker has no record of this request") : .wait
        }
        let others = completion.sources.filter { $0.kind != .peer }
        guard !record.sessions.isEmpty else {
            // The origin was told to serve it: no peer can have carried any of it.
            let verification: Verification = claimedPeerBytes == 0 ? .originOnly : .capped
            return .record(fulfilment(peerBytes: 0, sources: others, verification: verification), server: record.server)
        }
        guard record.isSettled || waitedLongEnough else { return .wait }

        // Each session's claim is held against what witnessed it: the relay's count, or, when the
        // relay died with its count, the sender's (a second party, but not a neutral one).
        var credited: [SourceBytes] = []
        var capped = false, unverified = false
        var claims: [(session: SessionID?, device: DeviceID?, bytes: UInt64)] = []
        for source in peerSources {
            if let index = claims.firstIndex(where: { $0.session == source.sessionId && $0.device == source.device }) {
                claims[index].bytes += source.bytes
            } else {
                claims.append((source.sessionId, source.device, source.bytes))
            }
        }
        for claim in claims {
            guard let session = record.sessions.first(where: { $0.sessionId == claim.session && $0.sender == claim.device }) else {
                capped = true  // no session the broker made sent it
                continue
            }
            var bytes = claim.bytes
            if session.closed, var witness = session.relayPayloadBytes ?? session.senderPayloadBytes {
                // The sender's own forwarding relay counts for the sender: two words of one
                // party, which could vouch for a friend's claim, so never `matched`.
                if session.relayPayloadBytes == nil || session.forwardedBySender == true { unverified = true }
                // Three counts, each from another party: a relay can't forward more than the
                // sender sent, so if it says it did one of the two lies, and the receiver is
                // credited with no more than the smaller.
                if let relayed = session.relayPayloadBytes, let sent = session.senderPayloadBytes, relayed > sent {
                    capped = true
                    witness = sent
                }
                if bytes > witness { capped = true; bytes = witness }
            } else {
                unverified = true
            }
            if bytes > 0 { credited.append(SourceBytes(kind: .peer, device: session.sender, sessionId: session.sessionId, bytes: bytes)) }
        }
        let verification: Verification = capped ? .capped : unverified ? .unverified : .matched
        return .record(fulfilment(peerBytes: credited.reduce(0) { $0 + $1.bytes }, sources: credited + others, verification: verification),
                       server: record.server)
    }
}
