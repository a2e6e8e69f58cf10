import FerryContent
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import Hummingbird
import ServiceLifecycle
import Logging
import Metrics
import Synchronization

public struct OriginConfig: Sendable {
    public var host: String
    public var port: Int
    /// The base URL requests name as their server: where fulfilments are delivered.
    public var publicURL: String
    public var dataDirectory: String
    public var intake: String
    public var eventsIn: String
    /// The event bus's subscriber endpoint: the status page is fed from it.
    public var eventsOut: String
    public var chunkSize: UInt32
    public var packetSize: UInt32
    /// The operator's bearer token; nil: the one in the data directory (made on first start).
    public var operatorToken: String?
    /// Where the fleet's standing join tokens (`device.token`, `relay.token`) are written on
    /// first start; nil: `join-tokens` in the data directory.
    public var joinTokenDirectory: String?
    /// Where `relay.token` goes instead; nil: beside `device.token`.
    public var relayJoinTokenDirectory: String?
    /// The reporter's Ed25519 public key (base64), or a file holding it: fulfilments it didn't
    /// sign are refused. Nil: the fleet's `reporter-signing` key (transport keys are required then).
    public var reporterKey: String?
    public var security: TransportSecurity
    /// Whether the event bus wants CURVE from subscribers (the status page is one).
    public var eventsCurve: Bool
    public init(host: String, port: Int, publicURL: String, dataDirectory: String, intake: String, eventsIn: String,
                eventsOut: String, chunkSize: UInt32, packetSize: UInt32, operatorToken: String? = nil,
                joinTokenDirectory: String? = nil, relayJoinTokenDirectory: String? = nil, reporterKey: String? = nil, security: TransportSecurity = .off,
                eventsCurve: Bool = false) {
        self.security = security
        self.eventsCurve = eventsCurve
        self.operatorToken = operatorToken
        self.joinTokenDirectory = joinTokenDirectory
        self.relayJoinTokenDirectory = relayJoinTokenDirectory
        self.reporterKey = reporterKey
        self.eventsOut = eventsOut
        self.host = host
        self.port = port
        self.publicURL = publicURL
        self.dataDirectory = dataDirectory
        self.intake = intake
        self.eventsIn = eventsIn
        self.chunkSize = chunkSize
        self.packetSize = packetSize
    }
}

/// The download server of the claim: holds content and manifests, takes devices' requests and
/// hands them to Ferry (step a), serves bytes itself when no peer can, and records the
/// fulfilments Ferry reports (step i).
public enum Origin {
    /// The HTTP server and the loop that feeds its status page from the event stream.
    public static func services(_ config: OriginConfig, logger: Logger) throws -> [any Service] {
        let live = LiveView()
        return [try application(config, live: live, logger: logger),
                live.service(eventsOut: config.eventsOut, security: config.eventsCurve ? config.security : .off, logger: logger)]
    }

    static func application(_ config: OriginConfig, live: LiveView, logger: Logger) throws -> some ApplicationProtocol {
        do {
            let probe = try ContentID(String(repeating: "0", count: 64))
            try ContentSummary(contentId: probe, size: 1, chunkSize: config.chunkSize, packetSize: config.packetSize).validate()
        } catch {
            throw ConfigurationError("FERRY_CHUNK_SIZE / FERRY_PACKET_SIZE: \(error)")
        }
        let root = URL(fileURLWithPath: config.dataDirectory)
        let uploads = root.appendingPathComponent("uploads")
        try FileManager.default.createDirectory(at: uploads, withIntermediateDirectories: true)
        let store = try ContentStore(root: root.appendingPathComponent("content"))
        let records = try FulfilmentRecords(path: root.appendingPathComponent("origin.sqlite").path)
        let forwarder = try RequestForwarder(intakeEndpoint: config.intake, eventsIn: config.eventsIn, security: config.security, logger: logger)
        /// Every audited change is also an event: its topic is the action, its data what the
        /// entry records, with who (`actor`) and its place in the trail (`auditSeq`).
        @Sendable func announce(_ entry: AuditEntry, ferryTold: Bool? = nil) {
            forwarder.publish(Publication(audited: entry, ferryTold: ferryTold))
        }
        let signingKey: SigningKey
        if let fleet = config.security.fleet {
            // The fleet's services check the origin's answers with the public half they were given.
            signingKey = try fleet.secretSigningKey(.origin)
        } else {
            signingKey = try SigningKey.loadOrCreate(at: root.appendingPathComponent("signing.key"))
        }
        let operatorCredential: StoredSecret
        let operatorFile = root.appendingPathComponent(StoredSecret.operatorTokenFile)
        do {
            operatorCredential = try StoredSecret.loadOrCreate(given: config.operatorToken, file: operatorFile, variable: "FERRY_OPERATOR_TOKEN")
        } catch {
            throw ConfigurationError("\(error)")
        }
        if config.operatorToken?.isEmpty ?? true { logger.info("operator token for publishing", metadata: ["file": "\(operatorFile.path)"]) }
        let devices = try DeviceRegistry(path: root.appendingPathComponent("devices.sqlite").path)
        // Like `docker swarm init`: one reusable token per kind, for replicas that share one.
        let tokenDirectory = config.joinTokenDirectory.map { URL(fileURLWithPath: $0) } ?? root.appendingPathComponent("join-tokens")
        let relayTokenDirectory = config.relayJoinTokenDirectory.map { URL(fileURLWithPath: $0) } ?? tokenDirectory
        for kind in [PartyKind.device, .relay] {
            let file = (kind == .relay ? relayTokenDirectory : tokenDirectory).appendingPathComponent("\(kind.rawValue).token")
            switch try devices.standingToken(kind, file: file) {
            case .issued(let id, let entry):
                announce(entry)
                logger.info("standing join token", metadata: ["kind": "\(kind.rawValue)", "token": "\(id)", "file": "\(file.path)"])
            case .kept(let id):
                logger.info("standing join token", metadata: ["kind": "\(kind.rawValue)", "token": "\(id)", "file": "\(file.path)"])
            case .revoked(let id):
                logger.warning("standing join token revoked; remove the file to issue a new one",
                               metadata: ["kind": "\(kind.rawValue)", "token": "\(id)", "file": "\(file.path)"])
            }
        }
        let reporterKey = try ReporterKey(config.reporterKey.map { .given($0) } ?? .fleet(config.security.fleet))
        let callers = CallerCheck(devices: devices, operatorCredential: operatorCredential)
        let contentKeys = try ContentKeys(directory: root.appendingPathComponent("content-keys"))
        // Publishing, withdrawing, managing the fleet and reading its records: only the operator
        // may. Basic authentication (the token as password) is accepted so a browser can open
        // the status page, and the 401 says so.
        @Sendable func operatorRefusal(_ request: Request) throws -> Response? {
            guard !operatorCredential.admits(authorization: request.headers[.authorization]) else { return nil }
            Counter(label: "ferry_origin_refused_total", dimensions: [("reason", "operator-credential")]).increment()
            var response = try json(ErrorBody(reason: "operator-credential",
                                              error: "needs the operator token: Authorization: Bearer <token>, or as the Basic-auth password (FERRY_OPERATOR_TOKEN, or the origin's operator.token file)"),
                                    status: .unauthorized)
            response.headers[.wwwAuthenticate] = "Basic realm=\"ferry-origin\", charset=\"UTF-8\""
            return response
        }
        /// A list of the fleet's records: the operator's only, one page at a time.
        @Sendable func operatorPage(_ request: Request, _ list: (Page) throws -> any Encodable) throws -> Response {
            if let refusal = try operatorRefusal(request) { return refusal }
            guard let page = Page(request) else { return try Page.refusal() }
            return try json(try list(page))
        }
        let manifests = ManifestCache(store: store, signingKey: signingKey)
        let fileIO = FileIO()

        let router = Router(context: OriginRequestContext.self)
        router.get("/health") { _, _ in
            try json(["status": "ok"])
        }

        router.get("/metrics") { _, _ in MetricsEndpoint.response() }

        // The live status page and its feed: a snapshot of the live view twice a second, as
        // server-sent events, for as long as the browser listens.
        router.get("/status") { request, _ in
            if let refusal = try operatorRefusal(request) { return refusal }
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: StatusPage.html)))
        }
        router.get("/v1/live") { request, _ in
            if let refusal = try operatorRefusal(request) { return refusal }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                     body: ResponseBody { writer in
                         while !Task.isCancelled {
                             var frame = ByteBuffer(string: "data: ")
                             frame.writeBytes(live.snapshot())
                             frame.writeString("\n\n")
                             try await writer.write(frame)
                             try await Task.sleep(for: .milliseconds(500))
                         }
                         try await writer.finish(nil)
                     })
        }

        // Publish: the request body is the content; it is streamed to disk, then described.
        router.post("/v1/content") { request, context in
            if let refusal = try operatorRefusal(request) { return refusal }
            let name: String = request.uri.queryParameters.get("name").map { String($0) } ?? "content"
            guard !name.isEmpty, name.utf8.count <= 255, !name.contains("/") else {
                return try json(ErrorBody(reason: "bad-name", error: "name must be a plain file name of 1-255 bytes"), status: .badRequest)
            }
            let upload = uploads.appendingPathComponent(UUID().uuidString)
            try await fileIO.writeFile(contents: request.body, path: upload.path, context: context)
            defer { try? FileManager.default.removeItem(at: upload) }
            let manifest: Manifest
            do {
                manifest = try ManifestCodec.build(fileAt: upload, name: name, chunkSize: config.chunkSize, packetSize: config.packetSize)
            } catch ContentError.empty {
                return try json(ErrorBody(reason: "empty", error: "content is empty"), status: .badRequest)
            }
            // The same bytes published again are the same content: answer with what is held.
            if let held = manifests.get(manifest.contentId) { return try json(held, status: .ok) }
            let allowed: [DeviceID]
            do {
                allowed = try (request.uri.queryParameters.get("allow").map { String($0) } ?? "").split(separator: ",").map { try DeviceID(String($0)) }
            } catch {
                return try json(ErrorBody(reason: "bad-allow", error: "allow must be a comma-separated list of device ids: \(error)"), status: .badRequest)
            }
            // The audience is always named, so forgetting an allow list can't publish to everyone.
            let toAll = request.uri.queryParameters.get("audience") == "all"
            guard allowed.isEmpty == toAll else {
                return try json(ErrorBody(reason: "no-audience", error: "name the audience: allow=ID,... or audience=all (ferry publish --allow ID... or --all-devices), not both"),
                                status: .badRequest)
            }
            let signed = try ManifestCodec.sign(manifest, with: signingKey)
            try devices.restrict(manifest.contentId, to: allowed)
            _ = try contentKeys.key(for: manifest.contentId)
            try store.adoptFile(at: upload, manifest: signed)
            announce(try devices.record(subject: manifest.contentId.hex, by: .operator(from: context.address), EventData.ContentPublished(
                contentId: manifest.contentId.hex, name: manifest.name, size: manifest.size, chunks: manifest.chunkHashes.count,
                audience: toAll ? "all" : "allow-list", allowed: allowed.count)))
            return try json(signed, status: .created)
        }

        // Withdraw: the origin stops serving it, and Ferry ends its sessions and has every
        // holder drop it.
        router.delete("/v1/content/:id") { request, context in
            if let refusal = try operatorRefusal(request) { return refusal }
            guard let id = try? ContentID(context.parameters.require("id")), manifests.get(id) != nil else {
                return try json(ErrorBody(reason: "unknown-content", error: "no such content"), status: .notFound)
            }
            manifests.forget(id)
            store.remove(id)
            contentKeys.forget(id)
            let entry = try devices.record(subject: id.hex, by: .operator(from: context.address), EventData.ContentWithdrawn(contentId: id.hex))
            let told = try forwarder.forward(ContentWithdrawn(contentId: id, reason: "withdrawn at the origin"))
            announce(entry, ferryTold: told)
            return try json(ContentWithdrawalResult(contentId: id, ferryTold: told))
        }

        // The key devices check manifests with. Operators put it in each device's configuration
        // (FERRY_ORIGIN_PUBLIC_KEY); a device never trusts it fetched over the network.
        router.get("/v1/origin-key") { _, _ in
            try json(["publicKey": signingKey.publicKey, "algorithm": "ed25519"])
        }

        // Content with an allow list is listed to the operator only.
        router.get("/v1/content") { request, _ in
            guard let page = Page(request) else { return try Page.refusal() }
            let restricted = operatorCredential.admits(authorization: request.headers[.authorization]) ? [] : try devices.restrictedContent()
            let listed = store.holdings().map(\.hex).filter { !restricted.contains($0) }.sorted()
            return try json(listed.filter { hex in page.after.map { hex > $0 } ?? true }.prefix(page.limit).compactMap { hex in
                (try? ContentID(hex)).flatMap { manifests.get($0)?.summary }
            })
        }

        router.get("/v1/content/:id/manifest") { request, context in
            guard let id = try? ContentID(context.parameters.require("id")), let manifest = manifests.get(id) else {
                return try json(ErrorBody(reason: "unknown-content", error: "no such content"), status: .notFound)
            }
            if let refusal = try callers.refusal(request, for: id) { return refusal }
            return try json(manifest)
        }

        // The content key, wrapped for the asking device: only an entitled device gets it, and
        // only in a form its own X25519 key opens.
        router.get("/v1/content/:id/key") { request, context in
            guard let id = try? ContentID(context.parameters.require("id")), manifests.get(id) != nil else {
                return try json(ErrorBody(reason: "unknown-content", error: "no such content"), status: .notFound)
            }
            switch try callers.caller(request, for: id) {
            case .refused(let response): return response
            case .operator:
                return try json(ErrorBody(reason: "devices-only", error: "content keys are wrapped for enrolled devices only"), status: .forbidden)
            case .device(let device):
                return try json(try KeyWrap.wrap(try contentKeys.key(for: id), for: device.agreementKey, content: id, device: device.deviceId,
                                                 signedBy: signingKey))
            }
        }

        // The fallback: bytes straight from the origin, with HTTP range requests.
        router.get("/v1/content/:id/data") { request, context in
            guard let id = try? ContentID(context.parameters.require("id")), let manifest = manifests.get(id) else {
                return try json(ErrorBody(reason: "unknown-content", error: "no such content"), status: .notFound)
            }
            if let refusal = try callers.refusal(request, for: id) { return refusal }
            let size = Int(manifest.size)
            let path = store.dataURL(id).path
            guard let header = request.headers[.range] else {
                return Response(status: .ok, headers: [.contentType: "application/octet-stream", .contentLength: String(size), .acceptRanges: "bytes"],
                                body: try await fileIO.loadFile(path: path, context: context))
            }
            guard let range = ByteRange.parse(header, size: size) else {
                return Response(status: .rangeNotSatisfiable, headers: [.contentRange: "bytes */\(size)"])
            }
            Counter(label: "ferry_origin_served_bytes_total").increment(by: range.count)
            return Response(status: .partialContent, headers: [
                .contentType: "application/octet-stream", .contentLength: String(range.count),
                .contentRange: "bytes \(range.lowerBound)-\(range.upperBound)/\(size)"],
                body: try await fileIO.loadFile(path: path, range: range, context: context))
        }

        // Step (a): a device asks; Ferry is told.
        router.post("/v1/requests") { request, context in
            let ask: DeviceRequest
            let body: Data
            do {
                // The device's signature covers the body: read it whole (it is small), then decode.
                body = Data(buffer: try await request.body.collect(upTo: Envelope.maxBodyBytes))
                ask = try JSONCoding.decoder.decode(DeviceRequest.self, from: body)
            } catch {
                Counter(label: "ferry_origin_refused_total", dimensions: [("reason", "malformed")]).increment()
                forwarder.publish(EventData.RequestRejected(reason: "malformed", detail: "\(error)", service: "origin"))
                return try json(ErrorBody(reason: "malformed", error: "a request needs deviceId and contentId: \(error)"), status: .badRequest)
            }
            let requestId = ask.requestId ?? RequestID.random(prefix: "req")
            if let refusal = try callers.refusal(request, body: body, for: ask.contentId, asking: ask.deviceId) {
                forwarder.publish(EventData.RequestRejected(reason: "device-auth", deviceId: ask.deviceId.rawValue, service: "origin"), requestId: requestId)
                return refusal
            }
            guard let manifest = manifests.get(ask.contentId) else {
                forwarder.publish(EventData.RequestRejected(reason: "unknown-content", contentId: ask.contentId.hex, deviceId: ask.deviceId.rawValue,
                                                            service: "origin"), requestId: requestId)
                return try json(ErrorBody(reason: "unknown-content", error: "no content \(ask.contentId.hex) at this origin"), status: .notFound)
            }
            let forwarded = DownloadRequest(requestId: requestId, deviceId: ask.deviceId, content: manifest.summary,
                                            server: config.publicURL, requestedAt: Timestamp.now())
            guard try forwarder.forward(forwarded) else {
                return try json(ErrorBody(reason: "intake-unavailable", error: "request intake is not reachable; fetch from the origin"),
                                status: .serviceUnavailable)
            }
            Counter(label: "ferry_origin_requests_total", dimensions: [("outcome", "accepted")]).increment()
            return try json(RequestAccepted(requestId: requestId, content: manifest.summary), status: .accepted)
        }

        // Step (i): Ferry reports a fulfilment; recorded once per request id, and only when the
        // reporter signed it: anyone else could otherwise record a request first and have the
        // real fulfilment acknowledged as a duplicate.
        router.post("/v1/fulfilments") { request, context in
            let body: Data
            do {
                body = Data(buffer: try await request.body.collect(upTo: Envelope.maxBodyBytes))
            } catch {
                return try json(ErrorBody(reason: "too-large", error: "a fulfilment is at most \(Envelope.maxBodyBytes) bytes"), status: .contentTooLarge)
            }
            do {
                let header = request.headers.first { $0.name.canonicalName == DeliverySignature.header.lowercased() }?.value
                try DeliverySignature.verify(header, body: body, key: try reporterKey.key(),
                                             nowMilliseconds: SessionTokens.nowMilliseconds())
            } catch {
                Counter(label: "ferry_origin_refused_total", dimensions: [("reason", "delivery-signature")]).increment()
                forwarder.publish(EventData.MessageDropped(service: "origin", reason: "delivery-signature: \(error)", kind: "fulfilment"))
                return try json(ErrorBody(reason: "delivery-signature", error: "\(error)"), status: .unauthorized)
            }
            let fulfilment: Fulfilment
            do {
                fulfilment = try JSONCoding.decoder.decode(Fulfilment.self, from: body)
            } catch {
                Counter(label: "ferry_origin_refused_total", dimensions: [("reason", "malformed-fulfilment")]).increment()
                forwarder.publish(EventData.MessageDropped(service: "origin", reason: "\(error)", kind: "fulfilment"))
                return try json(ErrorBody(reason: "malformed", error: "\(error)"), status: .badRequest)
            }
            let inserted = try records.insert(fulfilment)
            Counter(label: inserted ? "ferry_origin_fulfilments_total" : "ferry_origin_fulfilments_duplicate_total").increment()
            return try json(FulfilmentAck(requestId: fulfilment.requestId, duplicate: !inserted))
        }

        // Enrolment: a device or relay registers its public keys with a join token.
        router.post("/v1/devices") { request, context in
            let enrolment: DeviceEnrolment
            do {
                enrolment = try await request.decode(as: DeviceEnrolment.self, context: context)
                _ = try VerifyingKey(base64: enrolment.signingKey)
                guard Data(base64Encoded: enrolment.agreementKey)?.count == 32 else { throw TrustError.badKey }
            } catch {
                return try json(ErrorBody(reason: "malformed", error: "an enrolment needs deviceId, signingKey, agreementKey, token: \(error)"),
                                status: .badRequest)
            }
            switch try devices.enrol(enrolment, from: context.address) {
            case .new(let enrolled, let entry):
                announce(entry)
                return try json(enrolled, status: .created)
            case .again:
                return try json(try devices.device(enrolment.deviceId.rawValue), status: .ok)
            case .refused(let reason):
                Counter(label: "ferry_origin_refused_total", dimensions: [("reason", reason.rawValue)]).increment()
                forwarder.publish(EventData.RequestRejected(reason: reason.rawValue, deviceId: enrolment.deviceId.rawValue, service: "origin"))
                return try json(ErrorBody(reason: reason.rawValue, error: reason.explanation), status: .init(code: reason.status))
            }
        }

        // A party that restarts proves itself with its key, not a token: it asks who it is.
        router.get("/v1/devices/me") { request, _ in
            switch try callers.party(request) {
            case .refused(let response): return response
            case .operator: return try json(ErrorBody(reason: "devices-only", error: "signed by a device or relay only"), status: .forbidden)
            case .device(let party): return try json(party)
            }
        }

        router.post("/v1/tokens") { request, context in
            if let refusal = try operatorRefusal(request) { return refusal }
            let asked: JoinTokenRequest
            do {
                asked = try await request.decode(as: JoinTokenRequest.self, context: context)
                guard (asked.uses ?? 1) >= 1, (asked.expiresInSeconds ?? 1) >= 1 else { throw WireError.invalid("uses and expiresInSeconds must be positive") }
            } catch {
                return try json(ErrorBody(reason: "malformed", error: "a token needs kind, and optionally partyId, uses, expiresInSeconds: \(error)"),
                                status: .badRequest)
            }
            let (issued, entry) = try devices.issue(asked, by: .operator(from: context.address))
            announce(entry)
            return try json(issued, status: .created)
        }

        router.get("/v1/tokens") { request, _ in try operatorPage(request) { try devices.joinTokens(after: $0.after, limit: $0.limit) } }

        router.delete("/v1/tokens/:id") { request, context in
            if let refusal = try operatorRefusal(request) { return refusal }
            guard let (info, entry) = try devices.revokeToken(try context.parameters.require("id"), by: .operator(from: context.address)) else {
                return try json(ErrorBody(reason: "unknown-token", error: "no such token"), status: .notFound)
            }
            if let entry { announce(entry) }
            return try json(info)
        }

        // Services ask before letting a device's or relay's CURVE key in (`EnrolledKeys`). The
        // answer is signed, so it is believed however it travelled; unknown keys get a 404.
        router.get("/v1/transport-keys/:hex") { _, context in
            let hex = try context.parameters.require("hex")
            guard hex.utf8.count == 64, let key = Hex.decode(hex).map({ Data($0) }) else {
                return try json(ErrorBody(reason: "malformed", error: "a transport key is 64 hex digits"), status: .badRequest)
            }
            guard let party = try devices.party(agreementKey: key.base64EncodedString()) else {
                return try json(ErrorBody(reason: "unknown-key", error: "no enrolled, unrevoked device or relay has this key"), status: .notFound)
            }
            let answer = try JSONCoding.encoder.encode(TransportKeyAnswer(key: key.base64EncodedString(), kind: party.kind,
                                                                          id: party.deviceId.rawValue,
                                                                          issuedAt: SessionTokens.nowMilliseconds()))
            return try json(SignedTransportKeyAnswer(answer: answer.base64EncodedString(),
                                                     signature: try signingKey.signature(for: answer).base64EncodedString()))
        }

        router.get("/v1/audit") { request, _ in try operatorPage(request) { try devices.audit(after: $0.after, limit: $0.limit) } }

        router.get("/v1/devices") { request, _ in try operatorPage(request) { try devices.page(after: $0.after, limit: $0.limit) } }

        // Revoking is fleet-wide at the origin: the device's every request is refused from now on.
        router.delete("/v1/devices/:id") { request, context in
            if let refusal = try operatorRefusal(request) { return refusal }
            guard let (device, entry) = try devices.revoke(try context.parameters.require("id"), by: .operator(from: context.address)) else {
                return try json(ErrorBody(reason: "unknown-device", error: "no such device"), status: .notFound)
            }
            // Ferry hears of it too, so the device is no longer matched, brokered or welcomed.
            let told = try forwarder.forward(DeviceRevocation(deviceId: device.deviceId))
            if let entry { announce(entry, ferryTold: told) }
            return try json(device)
        }

        router.get("/v1/fulfilments") { request, _ in try operatorPage(request) { try records.page(after: $0.after, limit: $0.limit) } }

        router.get("/v1/stats") { request, _ in
            if let refusal = try operatorRefusal(request) { return refusal }
            return try json(try records.stats())
        }

        router.get("/v1/fulfilments/:request") { request, context in
            if let refusal = try operatorRefusal(request) { return refusal }
            guard let id = try? RequestID(context.parameters.require("request")), let fulfilment = try records.find(id) else {
                return try json(ErrorBody(reason: "unknown-request", error: "no fulfilment recorded for that request"), status: .notFound)
            }
            return try json(fulfilment)
        }

        return Application(router: router, configuration: .init(address: .hostname(config.host, port: config.port), serverName: "ferry-origin"),
                           logger: logger)
    }
}

/// The context of every origin route: the caller's address is where the audit trail says a
/// change came from.
struct OriginRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let address: String?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        address = source.channel.remoteAddress?.ipAddress
    }
}

/// Verified manifests by content id, so a request doesn't re-read and re-hash one from disk.
final class ManifestCache: Sendable {
    let store: ContentStore
    let signingKey: SigningKey
    let cache = Mutex<[ContentID: Manifest]>([:])

    init(store: ContentStore, signingKey: SigningKey) {
        self.store = store
        self.signingKey = signingKey
    }

    func forget(_ id: ContentID) {
        _ = cache.withLock { $0.removeValue(forKey: id) }
    }

    func get(_ id: ContentID) -> Manifest? {
        if let hit = cache.withLock({ $0[id] }) { return hit }
        guard store.holds(id), var manifest = store.manifest(id) else { return nil }
        // Content stored before the origin had this key is signed now.
        if (try? ManifestCodec.verifySignature(manifest, publicKey: signingKey.publicKey)) == nil,
           let signed = try? ManifestCodec.sign(manifest, with: signingKey) {
            manifest = signed
        }
        cache.withLock { $0[id] = manifest }
        return manifest
    }
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; several ranges are not supported.
enum ByteRange {
    static func parse(_ header: String, size: Int) -> ClosedRange<Int>? {
        guard header.hasPrefix("bytes="), size > 0 else { return nil }
        let spec = header.dropFirst(6)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            guard let suffix = Int(last), suffix > 0 else { return nil }
            return max(0, size - suffix)...(size - 1)
        }
        guard let start = Int(first), start < size else { return nil }
        let end = last.isEmpty ? size - 1 : min(Int(last) ?? -1, size - 1)
        guard end >= start else { return nil }
        return start...end
    }
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let body = try JSONCoding.encoder.encode(value)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
}
