import FerryContent
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import Logging
import Synchronization

/// The agent's HTTP side, run on the shell's side-work threads: fetching and checking manifests, placing
/// requests, and fetching chunks by range when the origin must serve them.
struct OriginClient: Sendable {
    let baseURL: URL
    let deviceId: DeviceID
    let publicKey: String?
    let keys: DeviceKeys

    /// Every request says which device asks, signed with its key (`DeviceRequestAuth`), over its
    /// `Range` (sent with it here) and body too.
    func signed(_ method: String, _ url: URL, range: String? = nil, body: Data = Data()) -> [String: String] {
        let path = url.path + (url.query.map { "?" + $0 } ?? "")
        guard let value = try? keys.authorization(deviceId: deviceId, method: method, path: path, range: range, body: body,
                                                  nowMilliseconds: SessionTokens.nowMilliseconds()) else {
            return [:]
        }
        return ["Authorization": value].merging(range.map { ["Range": $0] } ?? [:]) { $1 }
    }

    /// Fetches the manifest, checks its root hash against the id asked for, then places the
    /// request with the origin (step a). Posts the outcome to the mailbox.
    func prepare(requestId: RequestID, contentId: ContentID, placeRequest: Bool, mailbox: Mailbox, on work: SideWork) {
        work.submit {
            do {
                let manifestURL = baseURL.appendingPathComponent("v1/content/\(contentId.hex)/manifest")
                let response = try BlockingHTTP.get(manifestURL, headers: signed("GET", manifestURL), timeout: 15)
                if response.status == 404 {
                    return mailbox.post(.requestFailed(requestId, reason: "unknown-content: the origin has no content \(contentId.hex)", fatal: true))
                }
                if response.status == 401 || response.status == 403 {
                    return mailbox.post(.requestFailed(requestId, reason: PartyEnrolment.reason(response), fatal: true))
                }
                guard response.ok else { throw HTTPError("manifest fetch answered \(response.status)") }
                let manifest = try ManifestCodec.decode(response.body)
                guard manifest.contentId == contentId else {
                    return mailbox.post(.requestFailed(requestId, reason: "the origin sent the manifest of other content", fatal: true))
                }
                if let publicKey {
                    do {
                        try ManifestCodec.verifySignature(manifest, publicKey: publicKey)
                    } catch {
                        return mailbox.post(.requestFailed(requestId, reason: "\(error)", fatal: true))
                    }
                }
                // The key peers seal it under, wrapped for this device alone.
                let keyURL = baseURL.appendingPathComponent("v1/content/\(contentId.hex)/key")
                let wrapped = try BlockingHTTP.get(keyURL, headers: signed("GET", keyURL), timeout: 15)
                guard wrapped.ok else {
                    return mailbox.post(.requestFailed(requestId, reason: PartyEnrolment.reason(wrapped), fatal: wrapped.status == 401 || wrapped.status == 403))
                }
                let key: ContentKey
                do {
                    let answer = try JSONCoding.decoder.decode(WrappedContentKey.self, from: wrapped.body)
                    // Wrapping needs only this device's public key; the origin's signature says
                    // the key inside is the content's, not one chosen by whoever answered.
                    if let publicKey { try KeyWrap.verify(answer, device: deviceId, origin: try VerifyingKey(base64: publicKey)) }
                    key = try keys.unwrap(answer, device: deviceId)
                } catch {
                    return mailbox.post(.requestFailed(requestId, reason: "\(error)", fatal: true))
                }
                mailbox.post(.manifestReady(requestId, manifest, key))
                guard placeRequest else { return }
                let body = try JSONCoding.encoder.encode(DeviceRequest(requestId: requestId, deviceId: deviceId, contentId: contentId))
                let requestsURL = baseURL.appendingPathComponent("v1/requests")
                let placed = try BlockingHTTP.post(requestsURL, json: body, headers: signed("POST", requestsURL, body: body), timeout: 15)
                switch placed.status {
                case 202, 200: break
                case 400, 401, 403, 404:
                    mailbox.post(.requestFailed(requestId, reason: PartyEnrolment.reason(placed), fatal: true))
                default:
                    mailbox.post(.requestFailed(requestId, reason: PartyEnrolment.reason(placed), fatal: false))
                }
            } catch {
                mailbox.post(.requestFailed(requestId, reason: "\(error)", fatal: false))
            }
        }
    }

    /// Fetches `chunks` by HTTP range, several chunks a request, verifies each against the
    /// manifest and writes only verified ones into the partial file.
    func fetch(requestId: RequestID, manifest: Manifest, chunks: [Int], into file: FileBytes, mailbox: Mailbox, stop: StopSignal,
               on work: SideWork) {
        let summary = manifest.summary
        let perRequest = max(1, Int((4 << 20) / summary.chunkSize))
        work.submit {
            do {
                let url = baseURL.appendingPathComponent("v1/content/\(manifest.contentId.hex)/data")
                for run in ChunkRange.runs(of: chunks) where !stop.isRequested {
                    var start = run.start
                    while start < run.end, !stop.isRequested {
                        let end = min(run.end, start + perRequest)
                        let first = summary.chunkOffset(start)
                        let last = summary.chunkOffset(end - 1) + UInt64(summary.chunkLength(end - 1)) - 1
                        let response = try BlockingHTTP.get(url, headers: signed("GET", url, range: "bytes=\(first)-\(last)"),
                                                            timeout: 60)
                        guard response.status == 206 || response.status == 200, response.body.count == Int(last - first + 1) else {
                            throw HTTPError("range fetch answered \(response.status) with \(response.body.count) bytes")
                        }
                        var stored: [Int] = []
                        var bytes: UInt64 = 0
                        try response.body.withUnsafeBytes { raw in
                            for chunk in start..<end {
                                let offset = Int(summary.chunkOffset(chunk) - first)
                                let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + summary.chunkLength(chunk)])
                                guard ManifestCodec.chunkMatches(slice, chunk: chunk, of: manifest) else {
                                    throw HTTPError("the origin sent chunk \(chunk) with the wrong hash")
                                }
                                try file.write(slice, at: summary.chunkOffset(chunk))
                                stored.append(chunk)
                                bytes += UInt64(slice.count)
                            }
                        }
                        mailbox.post(.originChunks(requestId, chunks: stored, bytes: bytes))
                        start = end
                    }
                }
                mailbox.post(.originFinished(requestId, error: stop.isRequested ? "cancelled" : nil))
            } catch {
                mailbox.post(.originFinished(requestId, error: "\(error)"))
            }
        }
    }
}
