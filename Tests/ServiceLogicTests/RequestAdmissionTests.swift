@testable import FerryIntake
import FerryProtocol
import FerryService
import Foundation
import Testing

/// Intake's decisions without a socket: each message in, what goes on to matching or what is
/// refused and why.
@Suite struct RequestAdmissionDecisions {
    let content = try! ContentID(String(repeating: "ab", count: 32))

    func request(_ id: String, device: String = "dev-a", content: ContentID? = nil) throws -> [Data] {
        try DownloadRequest(requestId: try RequestID(id), deviceId: try DeviceID(device),
                            content: ContentSummary(contentId: content ?? self.content, size: 1 << 20, chunkSize: 262_144, packetSize: 65_536),
                            server: "http://127.0.0.1:7080", requestedAt: Timestamp.now()).frames()
    }

    @Test func aRequestGoesOnStampedAndARetryKeepsItsTrace() throws {
        var admission = RequestAdmission(noticesOnlyFromTheOrigin: false)
        let first = try admission.admit(try request("req-1"), from: nil).get()
        #expect(first.admitted?.topic == .requestReceived)
        let match = try MatchRequest.decode(frames: first.frames)
        #expect(match.request.requestId.rawValue == "req-1" && match.attempt == 1)
        let again = try admission.admit(try request("req-1"), from: nil).get()
        #expect(again.admitted?.topic == .requestRetried)
        let retried = try MatchRequest.decode(frames: again.frames)
        #expect(retried.attempt == 2 && retried.traceId == match.traceId)
        #expect(admission.counters["received"] == JSONValue(2) && admission.counters["rejected"] == JSONValue(0))
    }

    @Test func whatCannotGoOnIsRefusedWithItsReason() throws {
        var admission = RequestAdmission(noticesOnlyFromTheOrigin: false)
        _ = try admission.admit(try request("req-1"), from: nil).get()
        func reason(_ frames: [Data]) -> String? {
            if case .failure(let rejection) = admission.admit(frames, from: nil) { return rejection.reason.rawValue }
            return nil
        }
        #expect(reason(try request("req-1", device: "dev-b")) == "request-id-conflict")
        #expect(reason([Data("ferry/1".utf8), Data("download.request".utf8), Data("{".utf8)]) == "malformed")
        #expect(reason([Data("ferry/9".utf8), Data("download.request".utf8), Data("{}".utf8)]) == "unsupported-version")
        // A body that doesn't decode still names its request when it can.
        let half = [Data("ferry/1".utf8), Data("download.request".utf8), Data(#"{"requestId":"req-half"}"#.utf8)]
        if case .failure(let rejection) = admission.admit(half, from: nil) { #expect(rejection.requestId?.rawValue == "req-half") }
        // Withdrawn content takes no new requests.
        let withdrawal = try ContentWithdrawn(contentId: content, reason: "gone").frames()
        #expect(try admission.admit(withdrawal, from: nil).get() == .init(frames: withdrawal, admitted: nil))
        #expect(reason(try request("req-2")) == "withdrawn")
        #expect(admission.matchingFull(try RequestID("req-3")).reason == .pipelineFull)
        #expect(admission.counters["rejected"] == JSONValue(6))
    }

    @Test func withKeysOnlyTheOriginWithdrawsOrRevokes() throws {
        var admission = RequestAdmission(noticesOnlyFromTheOrigin: true)
        let revocation = try DeviceRevocation(deviceId: try DeviceID("dev-b")).frames()
        for sender in [TransportPeer.listed("billing"), .fleet("broker"), .device("dev-b")] {
            guard case .failure(let rejection) = admission.admit(revocation, from: sender) else {
                Issue.record("a revocation from \(sender) went on")
                continue
            }
            #expect(rejection.reason == .notTheOrigin && rejection.detail?.contains(sender.userId) == true)
        }
        #expect(try admission.admit(revocation, from: .fleet("origin")).get().frames == revocation)
    }
}
