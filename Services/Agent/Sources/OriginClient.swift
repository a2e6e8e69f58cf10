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

    /// Fetches `chunks` (all that is missing, or what is missing of `stripe`) by HTTP range,
    /// several chunks a request, verifies each against the manifest as its last byte arrives and
    /// writes only verified ones into the partial file, posting each at once (a device passing
    /// the content on sends it from there).
    func fetch(requestId: RequestID, stripe: Stripe?, manifest: Manifest, chunks: [Int], into file: FileBytes, mailbox: Mailbox, stop: StopSignal,
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
                        let chunks = RangeChunks(manifest: manifest, chunks: start..<end, file: file) { chunk, bytes in
                            mailbox.post(.originChunks(requestId, chunks: [chunk], bytes: bytes))
                        }
                        try BlockingHTTP.stream(url, headers: signed("GET", url, range: "bytes=\(first)-\(last)"), timeout: 60, expect: [200, 206]) {
                            if stop.isRequested { throw HTTPError("cancelled") }
                            try chunks.take($0)
                        }
                        guard chunks.complete || stop.isRequested else { throw HTTPError("the range ended before chunk \(end - 1)") }
                        start = end
                    }
                }
                mailbox.post(.originFinished(requestId, stripe, error: stop.isRequested ? "cancelled" : nil))
            } catch {
                mailbox.post(.originFinished(requestId, stripe, error: stop.isRequested ? "cancelled" : "\(error)"))
            }
        }
    }
}

/// Cuts a streamed range into its chunks as they complete: each is checked against the
/// manifest and written before the next is started, and reported at once. One chunk's buffer,
/// whatever the range's size.
final class RangeChunks: @unchecked Sendable {
    let manifest: Manifest
    let file: FileBytes
    let end: Int
    let stored: (Int, UInt64) -> Void
    private(set) var next: Int
    private var buffer: [UInt8]
    private var filled = 0

    init(manifest: Manifest, chunks: Range<Int>, file: FileBytes, stored: @escaping (Int, UInt64) -> Void) {
        self.manifest = manifest
        self.file = file
        self.stored = stored
        next = chunks.lowerBound
        end = chunks.upperBound
        buffer = [UInt8](repeating: 0, count: Int(manifest.summary.chunkSize))
    }

    var complete: Bool { next == end }

    func take(_ raw: UnsafeRawBufferPointer) throws {
        let summary = manifest.summary
        var offset = 0
        while offset < raw.count {
            guard next < end else { throw HTTPError("the origin sent more than the range asked") }
            let length = summary.chunkLength(next)
            let take = min(length - filled, raw.count - offset)
            buffer.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: filled).copyMemory(from: raw.baseAddress!.advanced(by: offset), byteCount: take) }
            filled += take
            offset += take
            guard filled == length else { continue }
            try buffer.withUnsafeBytes { bytes in
                let chunk = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
                guard ManifestCodec.chunkMatches(chunk, chunk: next, of: manifest) else {
                    throw HTTPError("the origin sent chunk \(next) with the wrong hash")
                }
                try file.write(chunk, at: summary.chunkOffset(next))
            }
            stored(next, UInt64(length))
            next += 1
            filled = 0
        }
    }
}
