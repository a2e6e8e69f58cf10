import FerryContent
import FerryLink
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import Logging
import Metrics
import ZeroMQ

/// The device daemon: its content store, its announcements, its virtual links (sending and
/// receiving), verification, fallback to the origin, and the local control socket `ferry` uses.
public enum Agent {
    public static func service(_ config: AgentConfig, logger: Logger) throws -> LoopService {
        // The control socket gets content onto this device on anyone's say-so: never on the network.
        guard isLocalOnly(config.controlBind) else {
            throw ConfigurationError("FERRY_AGENT_CONTROL / --control must be ipc:// or a loopback tcp:// address (got \(config.controlBind))")
        }
        let store = try ContentStore(root: URL(fileURLWithPath: config.dataDirectory).appendingPathComponent("store"))
        let keys: DeviceKeys
        do {
            keys = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: config.dataDirectory))
        } catch {
            throw ConfigurationError("\(error)")
        }
        var config = config
        config.security = config.security.presenting(keys.transportKeyPair)
        return LoopService(name: "agent") { [config] stop in
            let agent = try AgentLoop(config: config, store: store, keys: keys, logger: logger)
            try agent.run(stop: stop)
        }
    }
}

/// What the agent counts: its status (`ferry status --agent`) shows each once non-zero, and
/// Prometheus as `ferry_agent_events_total{event}`. docs/protocol.md lists them all (a test
/// checks it).
enum AgentCount: String, CaseIterable {
    case brokerDropped = "broker.dropped"
    case brokerUnsent = "broker.unsent"
    case chunksRejected = "chunks.rejected"
    case completionsUnsent = "completions.unsent"
    case contentEvicted = "content.evicted"
    case contentWithdrawn = "content.withdrawn"
    case controlDropped = "control.dropped"
    case downloadsCompleted = "downloads.completed"
    case downloadsFailed = "downloads.failed"
    case getRefusedOutputOutsideDirectory = "get.refused.output-outside-directory"
    case linkDropped = "link.dropped"
    case sessionsRefusedLayoutMismatch = "sessions.refused.layout-mismatch"
    case sessionsSenderSilent = "sessions.sender-silent"
    case sessionsSending = "sessions.sending"
}

final class AgentLoop {
    let config: AgentConfig
    let store: ContentStore
    let logger: Logger
    /// Its context, event publisher, and the reconnection of what the services refused before
    /// this device's enrolment reached them.
    let shell: ServiceShell
    var context: Context { shell.context }
    let broker: Socket
    let holdings: Socket
    let reporter: Socket
    let control: Socket
    let origin: OriginClient
    let outputs: OutputDirectory
    let mailbox: Mailbox
    let enrolling = StopSignal()
    /// The broker's interval once it has welcomed us, so both sides judge liveness alike.
    var heartbeat: Duration
    let linkIdleTimeout = Duration.seconds(20)
    let startedAt = Timestamp.now()

    var downloads: [RequestID: Download] = [:]
    var sending: [SessionID: SendingLink] = [:]
    /// Starts at the wall-clock millisecond so a restarted agent's announcements are newer than
    /// the ones the matcher still remembers from before the restart.
    var announceSequence = UInt64(Date().timeIntervalSince1970 * 1000)
    var nextAnnounce = ContinuousClock.now
    var nextHeartbeat = ContinuousClock.now
    var lastHeardFromBroker = ContinuousClock.now
    var welcomed = false
    /// The broker's session-token key, from its welcome.
    var tokenKey: VerifyingKey?
    var uploadCap: TokenBucket?
    var counters: [AgentCount: Int] = [:]

    init(config: AgentConfig, store: ContentStore, keys: DeviceKeys, logger: Logger) throws {
        self.config = config
        self.store = store
        var logger = logger
        logger[metadataKey: "device.id"] = "\(config.deviceId)"
        self.logger = logger
        guard let url = URL(string: config.originURL) else { throw ConfigurationError("FERRY_ORIGIN_URL / --origin \(config.originURL) is not a URL") }
        origin = OriginClient(baseURL: url, deviceId: config.deviceId, publicKey: config.originPublicKey, keys: keys)
        if config.originPublicKey == nil {
            logger.warning("FERRY_ORIGIN_PUBLIC_KEY is not set: manifests are trusted without checking the origin's signature")
        }
        do {
            outputs = try OutputDirectory(config.outputDirectory)
        } catch {
            throw ConfigurationError("FERRY_AGENT_OUTPUT_DIR / --output-dir \(config.outputDirectory): \(error)")
        }
        heartbeat = .milliseconds(config.heartbeatMilliseconds)
        // A device binds no CURVE socket (its control socket is loopback only): no key gate.
        shell = try ServiceShell(.agent, publisher: "agent:\(config.deviceId)", security: config.security, eventsIn: config.eventsIn,
                                 enrolled: true, servesKeys: false, logger: logger)
        mailbox = try Mailbox(context: shell.context)
        // With keys the broker knows us by our key and routes by the id its ROUTER gives this
        // connection; a chosen routing id is only for plain TCP.
        let deviceId = config.deviceId.rawValue, isOn = config.security.isOn
        broker = try shell.connect(.dealer, to: config.broker, .broker) { broker in
            if !isOn { try broker.setIdentity(deviceId) }
            try Topology.brokerControl.limit(broker)
        }
        holdings = try shell.connect(.pub, to: config.holdings, .matcher)
        reporter = try shell.connect(.push, to: config.reporter, .reporter, queue: 10_000)
        control = try shell.bind(.router, Topology.agentControl, at: config.controlBind)
        if config.uploadBytesPerSecond > 0 { uploadCap = TokenBucket(bytesPerSecond: config.uploadBytesPerSecond) }
    }

    /// Counts for `ferry status --agent` and, as `ferry_agent_events_total`, for Prometheus.
    func count(_ name: AgentCount) {
        counters[name, default: 0] += 1
        Counter(label: "ferry_agent_events_total", dimensions: [("event", name.rawValue)]).increment()
    }

    func run(stop: StopSignal) throws {
        logger.info("agent up", metadata: ["control": "\(config.controlBind)", "origin": "\(config.originURL)", "store": "\(store.root.path)"])
        sendToBroker(AgentHello(deviceId: config.deviceId, zone: config.zone))
        let given = config.joinToken, file = config.joinTokenFile
        PartyEnrolment.start(origin: origin.baseURL, id: config.deviceId.rawValue, kind: .device, keys: origin.keys,
                             token: { given ?? file.flatMap { StoredSecret.read(at: URL(fileURLWithPath: $0)) } }, logger: logger, stop: enrolling)
        defer { enrolling.request() }
        /// Each session's socket: a receiver's to read, a sender's to read its credit and, while
        /// blocked, to learn when it may write again.
        func links() -> [(Socket, PollEvents)] {
            downloads.values.compactMap { download in download.receiving.map { ($0.socket, PollEvents.readable) } }
                + sending.values.map { ($0.socket, $0.blocked ? [.readable, .writable] : .readable) }
        }
        // Workers' notes wake the poll; only a sender with packets to pump, or held back by its
        // rate, needs the loop to come round soon by itself.
        func timeout() -> Int { sending.values.contains { ($0.wantsToWrite && !$0.blocked) || $0.throttled } ? 5 : 100 }
        try shell.run(while: { !stop.isRequested }, polling: [broker, control, mailbox.doorbell], links: links,
                      timeoutMilliseconds: timeout) { socket in
            if socket === broker {
                while let frames = try broker.receive(dontWait: true) { handleBroker(frames) }
            } else if socket === control {
                while let frames = try control.receive(dontWait: true) { handleControl(frames) }
            } else if socket === mailbox.doorbell {
                // Drained after every pass, below.
            } else if let download = downloads.values.first(where: { $0.receiving?.socket === socket }) {
                readReceiver(download)
            } else if let link = sending.values.first(where: { $0.socket === socket }) {
                readSender(link)
            }
        } tick: {
            for note in mailbox.drain() { apply(note) }
            for link in sending.values where link.wantsToWrite {
                do { try link.pump(cap: &uploadCap) } catch { finishSending(link, outcome: .failed, reason: "\(error)") }
            }
            tick()
        } finally: {
            for download in downloads.values { download.originFetch?.request(); download.partial?.saveProgress() }
            // A completion or a session report still queued must not be dropped by the exit.
            reporter.close(lingerMilliseconds: 5000)
            broker.close(lingerMilliseconds: 1000)
        }
        logger.info("agent stopped")
    }

    // MARK: local control (`ferry` on this device)

    func handleControl(_ frames: [Message]) {
        guard frames.count == 4 else { return count(.controlDropped) }
        let client = frames[0].data
        do {
            let envelope = try Envelope(frames: frames.dropFirst().map(\.data))
            switch envelope.kind {
            case GetCommand.kind: get(try envelope.decode(GetCommand.self), client: client)
            case StatusQuery.kind: reply(client, status())
            default: throw WireError.unknownKind(envelope.kind)
            }
        } catch {
            count(.controlDropped)
            logger.warning("control message refused: \(error)")
        }
    }

    func get(_ asked: GetCommand, client: Data) {
        var command = asked
        if let output = asked.output {
            switch outputs.resolve(output) {
            case .success(let url): command.output = url.path
            case .failure(let refusal):
                count(.getRefusedOutputOutsideDirectory)
                logger.warning("get refused", metadata: ["reason": "\(refusal)"])
                return reply(client, GetResult(requestId: nil, contentId: asked.contentId, ok: false, error: "\(refusal)", path: nil,
                                               sources: [], seconds: 0))
            }
        }
        if store.holds(command.contentId) {
            store.touch(command.contentId)
            var path = store.dataURL(command.contentId).path
            var failure: String?
            if let output = command.output {
                do {
                    try atomicCopy(from: store.dataURL(command.contentId), to: URL(fileURLWithPath: output))
                    path = output
                } catch {
                    failure = "\(error)"
                }
            }
            let size = store.manifest(command.contentId)?.size ?? 0
            reply(client, GetResult(requestId: nil, contentId: command.contentId, ok: failure == nil, error: failure, path: path,
                                    sources: [SourceBytes(kind: .local, bytes: size)], seconds: 0))
            return
        }
        if let running = downloads.values.first(where: { $0.contentId == command.contentId }) {
            running.waiters.append((client, command.output))
            return
        }
        let download = Download(requestId: RequestID.random(prefix: "req"), contentId: command.contentId,
                                planDeadline: .now + .milliseconds(config.planDeadlineMilliseconds))
        download.waiters.append((client, command.output))
        downloads[download.requestId] = download
        origin.prepare(requestId: download.requestId, contentId: command.contentId, placeRequest: true, mailbox: mailbox)
    }

    func reply<M: WireMessage>(_ client: Data, _ message: M) {
        guard let frames = try? message.frames() else { return }
        _ = try? control.send([client] + frames, dontWait: true)
    }

    // MARK: the broker's dialog

    func handleBroker(_ frames: [Message]) {
        lastHeardFromBroker = .now
        do {
            let envelope = try Envelope(frames: frames.map(\.data))
            switch envelope.kind {
            case Welcome.kind:
                let welcome = try envelope.decode(Welcome.self)
                heartbeat = .milliseconds(max(50, welcome.heartbeatMilliseconds))
                tokenKey = welcome.tokenKey.flatMap { try? VerifyingKey(base64: $0) }
                welcomed = true
                logger.info("welcomed by the broker", metadata: ["heartbeat.ms": "\(welcome.heartbeatMilliseconds)"])
            case Heartbeat.kind: break
            case SessionOpen.kind:
                let open = try envelope.decode(SessionOpen.self)
                switch open.role {
                case .sender: startSending(open)
                case .receiver: plan(.session(open), requestId: open.requestId, contentId: open.content.contentId)
                }
            case OriginDirective.kind:
                let directive = try envelope.decode(OriginDirective.self)
                plan(.origin(directive), requestId: directive.requestId, contentId: directive.content.contentId)
            case ContentWithdrawn.kind:
                withdraw(try envelope.decode(ContentWithdrawn.self))
            case SessionCancel.kind:
                let cancel = try envelope.decode(SessionCancel.self)
                if let link = sending[cancel.sessionId] { finishSending(link, outcome: .cancelled, reason: cancel.reason) }
                if let download = downloads.values.first(where: { $0.receiving?.open.sessionId == cancel.sessionId }) {
                    abandonSession(download, reason: cancel.reason, outcome: .cancelled, awaitNewPath: cancel.newPathFollows == true)
                }
            default:
                throw WireError.unknownKind(envelope.kind)
            }
        } catch {
            count(.brokerDropped)
            logger.warning("broker message refused: \(error)")
        }
    }

    /// A plan for a download arrived: a session with a peer, or the origin. A plan for a
    /// request this device did not make is a download pushed to it on its behalf.
    func plan(_ plan: Download.Plan, requestId: RequestID, contentId: ContentID) {
        let download: Download
        if let known = downloads[requestId] {
            download = known
        } else {
            guard !store.holds(contentId) else {
                if case .session(let open) = plan {
                    sendToBroker(SessionFinished(sessionId: open.sessionId, requestId: requestId, role: .receiver, outcome: .cancelled,
                                                 payloadBytes: 0, reason: "already-held"))
                }
                return
            }
            download = Download(requestId: requestId, contentId: contentId, planDeadline: .now + .milliseconds(config.planDeadlineMilliseconds))
            downloads[requestId] = download
            origin.prepare(requestId: requestId, contentId: contentId, placeRequest: false, mailbox: mailbox)
        }
        if case .preparing(var parked) = download.stage {
            parked.append(plan)
            download.stage = .preparing(parked: parked)
            return
        }
        switch plan {
        case .session(let open): startReceiving(download, open)
        case .origin(let directive) where download.receiving != nil:
            // The broker gave up on the session: it ends here too, and the origin serves the rest.
            abandonSession(download, reason: "origin-directed: \(directive.reason)", outcome: .cancelled)
        case .origin(let directive): startOrigin(download, reason: directive.reason)
        }
    }

    // MARK: receiving

    func startReceiving(_ download: Download, _ open: SessionOpen) {
        if download.receiving?.open.sessionId == open.sessionId { return }  // the broker repeated it
        guard download.receiving == nil, download.originFetch == nil, let prepared = download.prepared else {
            // Too late (the origin is already serving it) or a second session: tell the broker,
            // so it closes the session and frees its addresses.
            return sendToBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: .receiver, outcome: .cancelled,
                                                payloadBytes: 0, reason: "not-needed"))
        }
        let manifest = prepared.manifest, partial = prepared.partial
        guard open.content == manifest.summary else {
            refuseLayout(open, role: .receiver, verified: manifest.summary)
            return startOrigin(download, reason: "layout-mismatch")
        }
        do {
            let link = try ReceivingLink(open: open, partial: partial, key: prepared.contentKey.packetKey(for: manifest.summary), context: context,
                                         idleTimeout: linkIdleTimeout, security: config.security, relayKey: try relayKey(for: open))
            download.stage = .receiving(prepared, link)
            download.source = "peer:\(open.peerDevice) via \(open.relays.map(\.rawValue).joined(separator: ","))"
            shell.publish(.linkSpawned, requestId: open.requestId, sessionId: open.sessionId, [
                "role": "receiver", "deviceId": .string(config.deviceId.rawValue), "address": .string(open.address),
                "relayEndpoint": .string(open.relayEndpoint), "peerAddress": .string(open.peerAddress)])
            shell.publish(.transferStarted, requestId: open.requestId, sessionId: open.sessionId, [
                "deviceId": .string(config.deviceId.rawValue), "source": .string(open.peerDevice.rawValue),
                "relays": .array(open.relays.map { .string($0.rawValue) }), "wantChunks": JSONValue(partial.missing.count)])
        } catch {
            logger.warning("cannot spawn a link: \(error)")
            sendToBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: .receiver, outcome: .failed,
                                         payloadBytes: 0, reason: "link-spawn-failed"))
            startOrigin(download, reason: "link-spawn-failed")
        }
    }

    func readReceiver(_ download: Download) {
        // The link may have been closed earlier in this loop pass (cancelled, withdrawn).
        guard let link = download.receiving, downloads[download.requestId] === download else { return }
        do {
            while let frames = try link.socket.receive(dontWait: true) {
                let happened: [ReceivingLink.Event]
                do {
                    happened = try link.handle(frames)
                } catch {
                    count(.linkDropped)
                    logger.debug("packet refused: \(error)")
                    continue
                }
                for event in happened {
                    switch event {
                    case .chunkVerified: publishMilestone(download)
                    case .chunkRejected(let chunk):
                        count(.chunksRejected)
                        shell.publish(.transferChunkRejected, requestId: download.requestId, sessionId: link.open.sessionId, [
                            "chunk": JSONValue(chunk), "sender": .string(link.open.peerDevice.rawValue),
                            "deviceId": .string(config.deviceId.rawValue), "cause": link.unopenedChunks > 0 ? "tag" : "hash"])
                        // Nothing more is taken on a path caught carrying a corrupt chunk: the
                        // broker decides whom to blame (the sender, the relay) and finds another.
                        return abandonSession(download, reason: "corrupt-chunks", outcome: .failed, awaitNewPath: true,
                                              rejectedChunks: link.rejectedChunks.count, unopenedChunks: link.unopenedChunks)
                    case .aborted(let reason):
                        return abandonSession(download, reason: reason, outcome: .cancelled)
                    }
                }
                if link.isSettled { return sessionSettled(download, link) }
            }
        } catch {
            abandonSession(download, reason: "\(error)", outcome: .failed)
        }
    }

    /// Every chunk the session was to bring is verified or rejected.
    func sessionSettled(_ download: Download, _ link: ReceivingLink) {
        link.sendDone()
        link.close()
        settle(download, link)
        sendToBroker(SessionFinished(sessionId: link.open.sessionId, requestId: link.open.requestId, role: .receiver,
                                     outcome: .completed, payloadBytes: link.verifiedBytes))
        shell.publish(.linkClosed, requestId: download.requestId, sessionId: link.open.sessionId, [
            "role": "receiver", "deviceId": .string(config.deviceId.rawValue), "reason": "done",
            "payloadBytes": JSONValue(link.link.counters.payloadBytesForwarded), "rejectedChunks": JSONValue(link.rejectedChunks.count)])
        if download.partial?.isComplete == true { finish(download) }
        else { startOrigin(download, reason: "rejected-chunks") }
    }

    /// The session is over: what it verified counts as that peer's. Every caller moves the
    /// download on at once: finished, to the origin, or awaiting a new path.
    private func settle(_ download: Download, _ link: ReceivingLink) {
        download.peerPayloadBytes += link.link.counters.payloadBytesForwarded
        if link.verifiedBytes > 0 {
            download.peerSources.append(SourceBytes(kind: .peer, device: link.open.peerDevice, sessionId: link.open.sessionId, bytes: link.verifiedBytes))
        }
    }

    /// The session ended before it delivered everything. What is missing comes from the origin,
    /// unless the broker is finding a new path (`awaitNewPath`), which then resumes from the
    /// first chunk not yet verified.
    func abandonSession(_ download: Download, reason: String, outcome: SessionOutcome, awaitNewPath: Bool = false,
                        rejectedChunks: Int? = nil, unopenedChunks: Int? = nil) {
        guard let link = download.receiving else { return }
        link.sendAbort(reason)
        link.close()
        settle(download, link)
        sendToBroker(SessionFinished(sessionId: link.open.sessionId, requestId: link.open.requestId, role: .receiver,
                                     outcome: outcome, payloadBytes: link.verifiedBytes, reason: reason, rejectedChunks: rejectedChunks,
                                     unopenedChunks: unopenedChunks))
        shell.publish(.linkClosed, requestId: download.requestId, sessionId: link.open.sessionId, [
            "role": "receiver", "deviceId": .string(config.deviceId.rawValue), "reason": .string(reason),
            "payloadBytes": JSONValue(link.link.counters.payloadBytesForwarded), "verifiedBytes": JSONValue(link.verifiedBytes),
            "awaitingNewPath": .bool(awaitNewPath)])
        if awaitNewPath, let prepared = download.prepared {
            download.stage = .awaitingNewPath(prepared, until: .now + heartbeat * 10)
        } else {
            startOrigin(download, reason: "session-ended: \(reason)")
        }
    }

    func startOrigin(_ download: Download, reason: String) {
        guard download.originFetch == nil, let prepared = download.prepared else { return }
        let manifest = prepared.manifest, partial = prepared.partial
        let missing = partial.missing
        guard !missing.isEmpty else { return finish(download) }
        let stop = StopSignal()
        download.stage = .fromOrigin(prepared, stop)
        download.source = download.peerSources.isEmpty ? "origin" : download.source + " + origin"
        shell.publish(.transferStarted, requestId: download.requestId, [
            "deviceId": .string(config.deviceId.rawValue), "source": "origin", "reason": .string(reason), "wantChunks": JSONValue(missing.count)])
        origin.fetch(requestId: download.requestId, manifest: manifest, chunks: missing, into: partial.file, mailbox: mailbox, stop: stop)
    }

    // MARK: worker notes

    func apply(_ note: AgentNote) {
        switch note {
        case .manifestReady(let requestId, let manifest, let key):
            guard let download = downloads[requestId], case .preparing(let parked) = download.stage else { return }
            do {
                guard makeRoom(for: download, size: manifest.size) else {
                    return fail(download, reason: "storage-quota: \(manifest.size) bytes do not fit in a quota of \(config.storeQuotaBytes) bytes beside content in use")
                }
                let partial = try store.beginDownload(manifest)
                try store.saveContentKey(key, for: manifest.contentId)
                download.stage = .awaitingPlan(Download.Prepared(manifest: manifest, contentKey: key, partial: partial))
                download.localBytes = partial.verifiedBytes
                if partial.isComplete { return finish(download) }
                for plan in parked { self.plan(plan, requestId: requestId, contentId: download.contentId) }
            } catch {
                fail(download, reason: "cannot start the download: \(error)")
            }
        case .requestFailed(let requestId, let reason, let fatal):
            guard let download = downloads[requestId] else { return }
            if fatal || download.prepared == nil { fail(download, reason: reason) }
            else if case .awaitingPlan = download.stage { startOrigin(download, reason: "request-not-placed: \(reason)") }
        case .originChunks(let requestId, let chunks, let bytes):
            guard let download = downloads[requestId], let partial = download.partial else { return }
            for chunk in chunks { partial.markVerified(chunk) }
            download.originBytes += bytes
            publishMilestone(download)
        case .originFinished(let requestId, let error):
            guard let download = downloads[requestId] else { return }
            if let error { fail(download, reason: "origin fetch failed: \(error)") }
            else if download.partial?.isComplete == true { finish(download) }
            else { fail(download, reason: "origin fetch ended with chunks missing") }
        }
    }

    /// The server withdrew content: stop sending it, stop getting it, delete it, stop announcing it.
    func withdraw(_ withdrawal: ContentWithdrawn) {
        let id = withdrawal.contentId
        for link in sending.values where link.open.content.contentId == id { finishSending(link, outcome: .cancelled, reason: "withdrawn") }
        for download in downloads.values where download.contentId == id { fail(download, reason: "withdrawn: \(withdrawal.reason)") }
        guard store.holds(id) || FileManager.default.fileExists(atPath: store.root.appendingPathComponent(id.hex).path) else { return }
        store.remove(id)
        count(.contentWithdrawn)
        shell.publish(.contentEvicted, ["deviceId": .string(config.deviceId.rawValue), "contentId": .string(id.hex), "reason": "withdrawn"])
        nextAnnounce = .now
    }

    /// Evicts least recently used content until `size` more bytes fit the store quota. Content
    /// being sent or downloaded is never evicted; false when even that leaves too little room.
    func makeRoom(for download: Download, size: UInt64) -> Bool {
        guard config.storeQuotaBytes > 0 else { return true }
        let held = store.usage()
        let reserved = downloads.values.filter { $0 !== download && !store.holds($0.contentId) }.reduce(UInt64(0)) { $0 + $1.size }
        let protected = Set(sending.values.map(\.open.content.contentId)).union(downloads.values.map(\.contentId))
        guard let victims = StoreEviction.victims(held: held, inUse: held.reduce(0) { $0 + $1.bytes } + reserved, needed: size,
                                                  quota: config.storeQuotaBytes, protected: protected) else { return false }
        for victim in victims {
            store.remove(victim)
            count(.contentEvicted)
            shell.publish(.contentEvicted, ["deviceId": .string(config.deviceId.rawValue), "contentId": .string(victim.hex),
                                             "reason": "storage-quota", "quotaBytes": JSONValue(config.storeQuotaBytes)])
        }
        if !victims.isEmpty { nextAnnounce = .now }
        return true
    }

    // MARK: the end of a download

    func finish(_ download: Download) {
        guard let partial = download.partial, let manifest = download.manifest else { return }
        downloads[download.requestId] = nil
        download.originFetch?.request()
        let elapsed = (ContinuousClock.now - download.startClock).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        let final: URL
        do {
            final = store.holds(manifest.contentId) ? store.dataURL(manifest.contentId) : try partial.finish()
        } catch {
            return fail(download, reason: "\(error)")
        }
        count(.downloadsCompleted)
        store.touch(manifest.contentId)
        Counter(label: "ferry_agent_received_bytes_total", dimensions: [("source", "peer")]).increment(by: Int64(download.peerBytes))
        Counter(label: "ferry_agent_received_bytes_total", dimensions: [("source", "origin")]).increment(by: Int64(download.originBytes))
        Metrics.Timer(label: "ferry_agent_download_duration_seconds", preferredDisplayUnit: .seconds).recordSeconds(seconds)
        // Published before the completion goes out, so the stream reads transfer, then fulfilment.
        shell.publish(.transferCompleted, requestId: download.requestId, [
            "deviceId": .string(config.deviceId.rawValue), "contentId": .string(manifest.contentId.hex), "size": JSONValue(manifest.size),
            "bytesFromPeers": JSONValue(download.peerBytes), "bytesFromOrigin": JSONValue(download.originBytes),
            "bytesLocal": JSONValue(download.localBytes), "peerPayloadBytes": JSONValue(download.peerPayloadBytes), "seconds": .number(seconds),
            "MiBps": .number(seconds > 0 ? Double(manifest.size) / 1_048_576 / seconds : 0)])
        let completion = Completion(requestId: download.requestId, deviceId: config.deviceId, contentId: manifest.contentId,
                                    size: manifest.size, sources: download.sources,
                                    startedAt: download.startedAt, finishedAt: Timestamp.now())
        do {
            if try !reporter.send(try completion.frames(), dontWait: true) { count(.completionsUnsent) }
        } catch {
            count(.completionsUnsent)
        }
        for waiter in download.waiters {
            var path = final.path
            var failure: String?
            if let output = waiter.output {
                do {
                    try atomicCopy(from: final, to: URL(fileURLWithPath: output))
                    path = output
                } catch {
                    failure = "\(error)"
                }
            }
            reply(waiter.client, GetResult(requestId: download.requestId, contentId: manifest.contentId, ok: failure == nil, error: failure,
                                           path: path, sources: download.sources, seconds: seconds))
        }
        nextAnnounce = .now
    }

    func fail(_ download: Download, reason: String) {
        downloads[download.requestId] = nil
        download.originFetch?.request()
        if let link = download.receiving {
            link.sendAbort(reason)
            link.close()
            sendToBroker(SessionFinished(sessionId: link.open.sessionId, requestId: link.open.requestId, role: .receiver,
                                         outcome: .failed, payloadBytes: link.verifiedBytes, reason: reason))
        }
        download.partial?.saveProgress()
        // Sessions offered before the manifest came are declined, so the broker frees them.
        if case .preparing(let parked) = download.stage {
            for case .session(let open) in parked {
                sendToBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: .receiver, outcome: .cancelled,
                                             payloadBytes: 0, reason: reason))
            }
        }
        count(.downloadsFailed)
        logger.warning("download failed: \(reason)", metadata: ["request.id": "\(download.requestId)"])
        shell.publish(.transferFailed, requestId: download.requestId, [
            "deviceId": .string(config.deviceId.rawValue), "contentId": .string(download.contentId.hex), "reason": .string(reason)])
        for waiter in download.waiters {
            reply(waiter.client, GetResult(requestId: download.requestId, contentId: download.contentId, ok: false, error: reason,
                                           path: nil, sources: download.sources, seconds: 0))
        }
    }

    // MARK: sending

    /// With keys, the relay's CURVE key as the broker signed it in this party's token (checked
    /// with the key from the broker's welcome): a device talks to the relay the broker chose.
    func relayKey(for open: SessionOpen) throws -> [UInt8]? {
        guard config.security.isOn else { return nil }
        guard let tokenKey, let token = open.token, let relay = open.relays.first else {
            throw TrustError.badToken("no token, or no broker key to check it with")
        }
        let grant = try SessionTokens.check(token, key: tokenKey, session: open.sessionId, relay: relay, address: open.address,
                                            role: open.role, nowMilliseconds: SessionTokens.nowMilliseconds())
        guard let text = grant.relayKey, let key = Data(base64Encoded: text), key.count == 32 else {
            throw TrustError.badToken("the token names no relay key")
        }
        return Array(key)
    }

    func startSending(_ open: SessionOpen) {
        guard sending[open.sessionId] == nil else { return }
        guard config.serving, store.holds(open.content.contentId), let file = try? store.openForReading(open.content.contentId),
              let key = store.contentKey(open.content.contentId) else {
            // Without its key (content held from before keys existed) it can't be sent sealed,
            // and nothing goes through a relay in the clear.
            let reason = !config.serving ? "not-serving" : store.holds(open.content.contentId) ? "no-content-key" : "not-held"
            sendToBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: .sender, outcome: .failed,
                                         payloadBytes: 0, reason: reason))
            return
        }
        guard let manifest = store.manifest(open.content.contentId), open.content == manifest.summary else {
            return refuseLayout(open, role: .sender, verified: store.manifest(open.content.contentId)?.summary)
        }
        do {
            let link = try SendingLink(open: open, file: file, key: key.packetKey(for: manifest.summary), context: context, idleTimeout: linkIdleTimeout,
                                       security: config.security, relayKey: try relayKey(for: open))
            sending[open.sessionId] = link
            store.touch(open.content.contentId)
            count(.sessionsSending)
            shell.publish(.linkSpawned, requestId: open.requestId, sessionId: open.sessionId, [
                "role": "sender", "deviceId": .string(config.deviceId.rawValue), "address": .string(open.address),
                "relayEndpoint": .string(open.relayEndpoint), "peerAddress": .string(open.peerAddress)])
        } catch {
            sendToBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: .sender, outcome: .failed,
                                         payloadBytes: 0, reason: "link-spawn-failed: \(error)"))
        }
    }

    /// A session whose content summary isn't the verified manifest's: the layout fixes which
    /// bytes each nonce seals, so a session in another layout is refused at both ends, never
    /// served in the layout it claims.
    func refuseLayout(_ open: SessionOpen, role: SessionRole, verified: ContentSummary?) {
        count(.sessionsRefusedLayoutMismatch)
        logger.warning("session refused: its content layout differs from the manifest", metadata: [
            "session": "\(open.sessionId)", "role": "\(role)", "chunkSize": "\(open.content.chunkSize)", "packetSize": "\(open.content.packetSize)"])
        var fields: [String: JSONValue] = [
            "role": .string(role.rawValue), "deviceId": .string(config.deviceId.rawValue), "reason": .string("layout-mismatch"),
            "sessionLayout": Self.layout(open.content)]
        if let verified { fields["manifestLayout"] = Self.layout(verified) }
        shell.publish(.linkRefused, requestId: open.requestId, sessionId: open.sessionId, fields)
        sendToBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: role, outcome: .failed,
                                     payloadBytes: 0, reason: "layout-mismatch"))
    }

    static func layout(_ summary: ContentSummary) -> JSONValue {
        .object(["size": JSONValue(summary.size), "chunkSize": JSONValue(summary.chunkSize), "packetSize": JSONValue(summary.packetSize)])
    }

    func readSender(_ link: SendingLink) {
        // It may have been finished earlier in this loop pass (cancelled, withdrawn).
        guard sending[link.open.sessionId] === link else { return }
        do {
            while let frames = try link.socket.receive(dontWait: true) {
                do {
                    try link.handle(frames)
                } catch {
                    count(.linkDropped)
                    logger.debug("packet refused: \(error)")
                }
                if let outcome = link.finished { return finishSending(link, outcome: outcome, reason: link.finishReason) }
            }
        } catch {
            finishSending(link, outcome: .failed, reason: "\(error)")
        }
    }

    func finishSending(_ link: SendingLink, outcome: SessionOutcome, reason: String?) {
        guard sending.removeValue(forKey: link.open.sessionId) != nil else { return }
        Counter(label: "ferry_agent_sent_bytes_total").increment(by: Int64(link.link.counters.payloadBytesForwarded))
        link.close()
        sendToBroker(SessionFinished(sessionId: link.open.sessionId, requestId: link.open.requestId, role: .sender, outcome: outcome,
                                     payloadBytes: link.link.counters.payloadBytesForwarded, reason: reason))
        shell.publish(.linkClosed, requestId: link.open.requestId, sessionId: link.open.sessionId, [
            "role": "sender", "deviceId": .string(config.deviceId.rawValue), "reason": .string(reason ?? outcome.rawValue),
            "packets": JSONValue(link.link.counters.packetsForwarded), "payloadBytes": JSONValue(link.link.counters.payloadBytesForwarded)])
    }

    // MARK: timers

    func tick() {
        let now = ContinuousClock.now
        if now >= nextHeartbeat {
            nextHeartbeat = now + heartbeat
            if now - lastHeardFromBroker > heartbeat * 3 { sendToBroker(AgentHello(deviceId: config.deviceId, zone: config.zone)) }
            sendToBroker(Heartbeat(load: sending.count))
        }
        if now >= nextAnnounce {
            nextAnnounce = now + .milliseconds(config.announceMilliseconds)
            announce()
        }
        for download in downloads.values {
            if let link = download.receiving, let by = link.firstDataBy, now >= by {
                count(.sessionsSenderSilent)
                abandonSession(download, reason: SenderSilent.reason, outcome: .failed, awaitNewPath: true)
            } else if let link = download.receiving, link.link.isIdle(at: now) {
                abandonSession(download, reason: "link-idle", outcome: .failed)
            }
            if case .awaitingNewPath(_, let until) = download.stage, now >= until { startOrigin(download, reason: "no-new-path-in-time") }
            if case .awaitingPlan = download.stage {
                if now >= download.planDeadline {
                    startOrigin(download, reason: "no-plan-in-time")
                } else if now >= download.nextRetry {
                    // Same request id: Ferry treats it as the same request.
                    download.nextRetry = now + .seconds(5)
                    origin.prepare(requestId: download.requestId, contentId: download.contentId, placeRequest: true, mailbox: mailbox)
                }
            }
            if now - download.lastProgress >= .milliseconds(500), download.manifest != nil { progress(download, now: now) }
        }
        for link in sending.values where link.link.isIdle(at: now) {
            finishSending(link, outcome: .failed, reason: "link-idle")
        }
    }

    func progress(_ download: Download, now: ContinuousClock.Instant) {
        download.lastProgress = now
        download.partial?.saveProgress()
        let received = download.receivedBytes, total = download.size
        for waiter in download.waiters {
            reply(waiter.client, GetProgress(requestId: download.requestId, receivedBytes: received, totalBytes: total, source: download.source))
        }
        if now - download.startClock > .seconds(1) { publishProgress(download) }
    }

    /// A progress event at each quarter of the content, so even a sub-second transfer shows some.
    func publishMilestone(_ download: Download) {
        let total = download.size
        guard total > 0 else { return }
        let milestone = Int(download.receivedBytes * 4 / total)
        if milestone > download.lastMilestone && milestone < 4 {
            download.lastMilestone = milestone
            publishProgress(download)
        }
    }

    func publishProgress(_ download: Download) {
        shell.publish(.transferProgress, requestId: download.requestId, sessionId: download.receiving?.open.sessionId, [
            "deviceId": .string(config.deviceId.rawValue), "receivedBytes": JSONValue(download.receivedBytes),
            "totalBytes": JSONValue(download.size), "source": .string(download.source)])
    }

    func announce() {
        announceSequence += 1
        let announcement = HoldingsAnnouncement(deviceId: config.deviceId, sequence: announceSequence, contents: store.holdings(),
                                                serving: config.serving, activeUploads: sending.count, zone: config.zone,
                                                intervalMilliseconds: config.announceMilliseconds)
        guard let frames = try? announcement.frames() else { return }
        _ = try? holdings.send([Data(HoldingsAnnouncement.topic.utf8)] + frames, dontWait: true)
    }

    func sendToBroker<M: WireMessage>(_ message: M) {
        do {
            if try !broker.send(try message.frames(), dontWait: true) { count(.brokerUnsent) }
        } catch {
            count(.brokerUnsent)
        }
    }

    func status() -> StatusReport {
        var fields = counters.byName
        fields["downloads"] = JSONValue(downloads.count)
        fields["welcomed"] = .bool(welcomed)
        fields["sending"] = JSONValue(sending.count)
        fields["holdings"] = .array(store.holdings().map { .string($0.hex) })
        fields["sendingLinks"] = .array(sending.values.map {
            .object(["sessionId": .string($0.open.sessionId.hex), "packetsSent": JSONValue($0.link.credit.nextSequence),
                     "creditLimit": JSONValue($0.link.credit.limit), "window": JSONValue($0.link.credit.window)])
        })
        fields["downloadProgress"] = .array(downloads.values.map {
            .object(["requestId": .string($0.requestId.rawValue), "receivedBytes": JSONValue($0.receivedBytes), "totalBytes": JSONValue($0.size),
                     "source": .string($0.source)])
        })
        return StatusReport(service: "agent", id: config.deviceId.rawValue, startedAt: startedAt, counters: fields)
    }
}
