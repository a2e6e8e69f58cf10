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
        guard let session = record.sessionId else {
            // The origin was told to serve it: no peer can have carried any of it.
            let verification: Verification = claimedPeerBytes == 0 ? .originOnly : .capped
            return .record(fulfilment(peerBytes: 0, sources: completion.sources.filter { $0.kind == .origin }, verification: verification),
                           server: record.server)
        }
        guard record.state == .closed, let relayBytes = record.relayPayloadBytes else {
            guard waitedLongEnough else { return .wait }
            return .record(fulfilment(peerBytes: claimedPeerBytes, sources: completion.sources, verification: .unverified), server: record.server)
        }
        let fromSender = peerSources.filter { $0.device == record.sender && ($0.sessionId == nil || $0.sessionId == session) }
        let senderBytes = fromSender.reduce(UInt64(0)) { $0 + $1.bytes }
        let credited = min(senderBytes, relayBytes)
        let honest = fromSender.count == peerSources.count && senderBytes <= relayBytes
        var sources = completion.sources.filter { $0.kind == .origin }
        if credited > 0 { sources.insert(SourceBytes(kind: .peer, device: record.sender, sessionId: session, bytes: credited), at: 0) }
        return .record(fulfilment(peerBytes: credited, sources: honest ? completion.sources : sources,
                                  verification: honest ? .matched : .capped), server: record.server)
    }
}
