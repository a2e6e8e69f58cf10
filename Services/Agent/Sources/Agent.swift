import FerryContent
import FerryLink
import FerryProtocol
import FerryRelay
import FerryService
import FerryTrust
import Foundation
import Logging
import Metrics
import ZeroMQ

/// The device daemon: its content store, its announcements, its virtual links (sending and
/// receiving), verification, fallback to the origin, and the local control socket `ferry` uses.
public enum Agent {
    /// `forwarding`: this device opted in to forwarding, and its relay runs in this process, on
    /// the same ZeroMQ context, so a packet it sends reaches the relay in-process (`inproc://`,
    /// no copy, no CURVE, no second process to wake) and leaves it once, over CURVE, toward the
    /// next device. Its sessions finish before the agent stops: the relay is stopped first.
    public static func services(_ config: AgentConfig, forwarding: RelayConfig? = nil, logger: Logger) throws -> [LoopService] {
        guard var forwarding else { return [try service(config, logger: logger)] }
        var config = config
        forwarding.forwardsFor = config.deviceId
        forwarding.localBind = "inproc://ferry-forward"
        config.forwarder = forwarding.relayId
        config.forwarderLocal = forwarding.localBind
        let context = try Context()
        // Started in this order, stopped in the reverse one.
        return [try service(config, context: context, logger: logger), Relay.service(forwarding, context: context, logger: logger)]
    }

    static func service(_ config: AgentConfig, context: Context? = nil, logger: Logger) throws -> LoopService {
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
            let agent = try AgentLoop(config: config, store: store, keys: keys, context: context, logger: logger)
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
    case stripesReplaced = "stripes.replaced"
}

/// What a download works with once the origin has answered: the verified manifest, the
/// content's key, and the partial file chunks are written into.
struct PreparedContent {
    let manifest: Manifest
    let contentKey: ContentKey
    let partial: PartialContent
    let onward = OnwardPackets()
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
    /// The temporary outputs being made, so a start after a kill removes those left behind.
    let journal: OutputJournal
    let mailbox: Mailbox
    let enrolling = StopSignal()
    /// The broker's interval once it has welcomed us, so both sides judge liveness alike.
    var heartbeat: Duration
    let linkIdleTimeout = Duration.seconds(20)
    let startedAt = Timestamp.now()

    /// Every download's decisions; what they work with (files, links, fetches) is below.
    let downloads: Downloads
    var prepared: [RequestID: PreparedContent] = [:]
    /// Each receiving session's link: one per download, or one per stripe.
    var receivers: [SessionID: ReceivingLink] = [:]
    /// The origin's fetches: of all that is missing, or of stripes beside the sessions.
    var originFetches: [RequestID: [Stripe?: StopSignal]] = [:]
    /// The outputs of `ferry get`s copied while their downloads run.
    var mirrors: [RequestID: [OutputMirror]] = [:]
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
    var pumpTurn = 0
    var counters: [AgentCount: Int] = [:]

    init(config: AgentConfig, store: ContentStore, keys: DeviceKeys, context: Context? = nil, logger: Logger) throws {
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
        journal = OutputJournal(path: URL(fileURLWithPath: config.dataDirectory).appendingPathComponent("outputs-in-progress"), outputs: outputs)
        let left = journal.sweep()
        if !left.isEmpty {
            logger.notice("removed the temporary outputs an earlier run left", metadata: ["outputs": "\(left.joined(separator: ", "))"])
        }
        heartbeat = .milliseconds(config.heartbeatMilliseconds)
        downloads = Downloads(deviceId: config.deviceId, planWaitMilliseconds: config.planDeadlineMilliseconds, heartbeat: heartbeat)
        // A device binds no CURVE socket (its control socket is loopback only): no key gate.
        shell = try ServiceShell(.agent, publisher: "agent:\(config.deviceId)", security: config.security, eventsIn: config.eventsIn,
                                 context: context, enrolled: true, servesKeys: false, logger: logger)
        mailbox = try Mailbox(context: shell.context)
        // With keys the broker knows us by our key and routes by the id its ROUTER gives this
        // connection; a chosen routing id is only for plain TCP.
        let deviceId = config.deviceId.rawValue, isOn = config.security.isOn
        broker = try shell.connect(.dealer, to: config.broker, .broker) { broker in
            if !isOn { try broker.setIdentity(deviceId) }
            try Topology.brokerControl.limit(broker)
        }
        // An XPUB hears the matcher subscribe, at start and again after the matcher restarts
        // (verbose: libzmq keeps this side's connection, so to it that subscription is a repeat),
        // and the device announces then. A PUB's first announcement, sent before the subscription
        // arrived, is lost, and a restarted matcher would learn what it holds an interval later.
        holdings = try shell.connect(.xpub, to: config.holdings, .matcher) { try $0.setXPubVerbose(true) }
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
        sendToBroker(hello)
        let given = config.joinToken, file = config.joinTokenFile
        PartyEnrolment.start(origin: origin.baseURL, id: config.deviceId.rawValue, kind: .device, keys: origin.keys,
                             token: { given ?? file.flatMap { StoredSecret.read(at: URL(fileURLWithPath: $0)) } }, logger: logger, stop: enrolling,
                             on: shell.sideWork)
        defer { enrolling.request() }
        /// Each session's socket: a receiver's to read, a sender's to read its credit and, while
        /// blocked, to learn when it may write again.
        func links() -> [(Socket, PollEvents)] {
            receivers.values.flatMap { [($0.socket, PollEvents.readable), ($0.disconnections, PollEvents.readable)] }
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
            } else if let (sessionId, link) = receivers.first(where: { $0.value.socket === socket }) {
                readReceiver(sessionId, link)
            } else if let (sessionId, link) = receivers.first(where: { $0.value.disconnections === socket }) {
                while (try? link.disconnections.receive(dontWait: true)) != nil {}
                // Only a connection that carried data counts as lost: before that, a refused
                // handshake (a relay not yet admitting this device's key) drops it too, and
                // libzmq tries again; the sender's 5 s of patience covers a path that never starts.
                // Whatever was verified stays; the rest comes by a new path.
                if link.firstDataBy == nil { carryOut(downloads.relayDisconnected(sessionId)) }
            } else if let link = sending.values.first(where: { $0.socket === socket }) {
                readSender(link)
            }
        } tick: {
            for note in mailbox.drain() { apply(note) }
            // The links take turns to go first: under an upload cap the first would otherwise
            // take every token, and a holder would send its sessions one after another.
            let writers = sending.values.filter(\.wantsToWrite)
            pumpTurn &+= 1
            for offset in writers.indices {
                let link = writers[(offset + pumpTurn) % writers.count]
                do { try link.pump(cap: &uploadCap) } catch { finishSending(link, outcome: .failed, reason: "\(error)") }
            }
            tick()
        } finally: {
            for fetch in originFetches.values.flatMap(\.values) { fetch.request() }
            for requestId in mirrors.keys { dropMirrors(requestId) }
            for content in prepared.values { content.partial.saveProgress() }
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
            let size = store.manifest(command.contentId)?.size ?? 0
            return answer(client, copying: store.dataURL(command.contentId).path, to: command.output,
                          GetResult(requestId: nil, contentId: command.contentId, ok: true, error: nil, path: nil, sources: [SourceBytes(kind: .local, bytes: size)],
                                    seconds: 0))
        }
        carryOut(downloads.get(command.contentId, for: Downloads.Waiter(client: client, output: command.output)))
    }

    /// Answers a `ferry get` with `result`, its `path` being `file` or, with an output, the
    /// copy made there. Copying is proportional to the content, so it happens on side work and
    /// the answer comes back through the mailbox: the loop keeps feeding the sessions it sends.
    func answer(_ client: Data, copying file: String, to output: String?, _ result: GetResult) {
        guard let output else {
            var result = result
            result.path = file
            return reply(client, result)
        }
        let mailbox = self.mailbox, journal = self.journal
        shell.sideWork.submit {
            var result = result
            do {
                try journal.copy(from: file, to: output)
                result.path = output
            } catch {
                (result.ok, result.error) = (false, "\(error)")
            }
            mailbox.post(.answered(client: client, result))
        }
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
                downloads.heartbeat = heartbeat
                tokenKey = welcome.tokenKey.flatMap { try? VerifyingKey(base64: $0) }
                welcomed = true
                logger.info("welcomed by the broker", metadata: ["heartbeat.ms": "\(welcome.heartbeatMilliseconds)"])
            case Heartbeat.kind: break
            case SessionOpen.kind:
                let open = try envelope.decode(SessionOpen.self)
                switch open.role {
                case .sender: startSending(open)
                case .receiver:
                    carryOut(downloads.plan(.session(open), requestId: open.requestId, contentId: open.content.contentId,
                                            held: store.holds(open.content.contentId)))
                }
            case OriginDirective.kind:
                let directive = try envelope.decode(OriginDirective.self)
                carryOut(downloads.plan(.origin(directive), requestId: directive.requestId, contentId: directive.content.contentId,
                                        held: store.holds(directive.content.contentId)))
            case ContentWithdrawn.kind:
                withdraw(try envelope.decode(ContentWithdrawn.self))
            case SessionCancel.kind:
                let cancel = try envelope.decode(SessionCancel.self)
                if let link = sending[cancel.sessionId] { finishSending(link, outcome: .cancelled, reason: cancel.reason) }
                carryOut(downloads.cancelled(cancel))
            default:
                throw WireError.unknownKind(envelope.kind)
            }
        } catch {
            count(.brokerDropped)
            logger.warning("broker message refused: \(error)")
        }
    }

    // MARK: receiving

    /// Reads what the session's link received and tells the downloads' core of each frame that
    /// verified or rejected a chunk, ended the session, or settled it.
    func readReceiver(_ sessionId: SessionID, _ link: ReceivingLink) {
        guard receivers[sessionId] === link else { return }
        do {
            while let frames = try link.socket.receive(dontWait: true) {
                let happened: [Downloads.LinkEvent]
                do {
                    happened = try link.handle(frames)
                } catch {
                    count(.linkDropped)
                    logger.debug("packet refused: \(error)")
                    continue
                }
                let settled = link.isSettled
                guard !happened.isEmpty || settled else { continue }
                carryOut(downloads.received(sessionId, link.tally, happened, settled: settled, complete: settled && link.partial.isComplete))
                // What the core decided may have closed the link (a corrupt chunk, the end).
                guard receivers[sessionId] === link else { return }
            }
        } catch {
            carryOut(downloads.linkBroke(sessionId, reason: "\(error)"))
        }
    }

    /// Does what the downloads' core decided, and tells it what that work found.
    func carryOut(_ effects: [Downloads.Effect]) {
        for effect in effects {
            switch effect {
            case .prepare(let requestId, let contentId, let placeRequest):
                origin.prepare(requestId: requestId, contentId: contentId, placeRequest: placeRequest, mailbox: mailbox, on: shell.sideWork)
            case .openLink(let requestId, let open):
                openLink(requestId, open)
            case .closeLink(let sessionId, let abort):
                guard let link = receivers.removeValue(forKey: sessionId) else { continue }
                if let abort { link.sendAbort(abort) } else { link.sendDone() }
                link.close()
            case .fetchFromOrigin(let requestId, let stripe):
                guard let content = prepared[requestId] else { continue }
                let share = stripe.map { $0.chunks(of: content.manifest.summary.chunkCount) }
                let missing = content.partial.missing.filter { share?.contains($0) ?? true }
                if missing.isEmpty {
                    carryOut(downloads.originFinished(requestId, stripe: stripe, error: nil, complete: content.partial.isComplete))
                    continue
                }
                let stop = StopSignal()
                originFetches[requestId, default: [:]][stripe] = stop
                carryOut(downloads.originStarted(requestId, stripe: stripe, wantChunks: missing.count))
                origin.fetch(requestId: requestId, stripe: stripe, manifest: content.manifest, chunks: missing, into: content.partial.file, mailbox: mailbox,
                             stop: stop, on: shell.sideWork)
            case .stopOrigin(let requestId):
                originFetches.removeValue(forKey: requestId)?.values.forEach { $0.request() }
            case .finalize(let requestId):
                finalize(requestId)
            case .completed(let completed):
                handOver(completed)
            case .abandon(let requestId):
                originFetches.removeValue(forKey: requestId)?.values.forEach { $0.request() }
                dropMirrors(requestId)
                prepared.removeValue(forKey: requestId)?.partial.saveProgress()
            case .saveProgress(let requestId):
                prepared[requestId]?.partial.saveProgress()
            case .tellBroker(let finished):
                sendToBroker(finished)
            case .publish(let publication):
                shell.publish(publication)
            case .count(let name):
                count(name)
            case .warn(let message, let requestId):
                logger.warning("\(message)", metadata: requestId.map { ["request.id": "\($0)"] } ?? [:])
            case .reply(let client, let result):
                reply(client, result)
            case .progress(let client, let progress):
                reply(client, progress)
            }
        }
    }

    func openLink(_ requestId: RequestID, _ open: SessionOpen) {
        guard let content = prepared[requestId] else { return }
        do {
            let link = try ReceivingLink(open: open, partial: content.partial, onward: content.onward, key: content.contentKey.packetKey(for: content.manifest.summary),
                                         context: context, idleTimeout: linkIdleTimeout, security: config.security, relayKey: try relayKey(for: open))
            receivers[open.sessionId] = link
            carryOut(downloads.linkOpened(open.sessionId, wantChunks: link.outstanding.count, complete: content.partial.isComplete))
        } catch {
            carryOut(downloads.linkFailed(open.sessionId, reason: "\(error)"))
        }
    }

    // MARK: worker notes

    func apply(_ note: AgentNote) {
        switch note {
        case .manifestReady(let requestId, let manifest, let key):
            guard downloads.isPreparing(requestId) else { return }
            do {
                guard makeRoom(for: requestId, size: manifest.size) else {
                    return carryOut(downloads.requestFailed(requestId, reason: "storage-quota: \(manifest.size) bytes do not fit in a quota of \(config.storeQuotaBytes) bytes beside content in use", fatal: true))
                }
                let partial = try store.beginDownload(manifest)
                try store.saveContentKey(key, for: manifest.contentId)
                prepared[requestId] = PreparedContent(manifest: manifest, contentKey: key, partial: partial)
                // Progress announcements run from the download's start, not from the idle
                // schedule's next turn (up to FERRY_ANNOUNCE_MS away): the swarm plan measures
                // each member's pace from them, and a slow hop costs the chain until it is seen.
                nextAnnounce = .now
                carryOut(downloads.prepared(requestId, manifest.summary, localBytes: partial.verifiedBytes, complete: partial.isComplete))
            } catch {
                carryOut(downloads.requestFailed(requestId, reason: "cannot start the download: \(error)", fatal: true))
            }
        case .requestFailed(let requestId, let reason, let fatal):
            carryOut(downloads.requestFailed(requestId, reason: reason, fatal: fatal))
        case .originChunks(let requestId, let chunks, let bytes):
            guard let partial = prepared[requestId]?.partial else { return }
            for chunk in chunks { partial.markVerified(chunk) }
            carryOut(downloads.originChunks(requestId, bytes: bytes))
        case .finalized(let requestId, let path, let error):
            if let path { carryOut(downloads.finalized(requestId, path: path)) } else { carryOut(downloads.finalizeFailed(requestId, error: error ?? "unknown")) }
        case .answered(let client, let result):
            reply(client, result)
        case .mirrored(let requestId, let temporary, let error):
            mirrored(requestId, temporary: temporary, error: error)
        case .originFinished(let requestId, let stripe, let error):
            originFetches[requestId]?[stripe] = nil
            if originFetches[requestId]?.isEmpty == true { originFetches[requestId] = nil }
            carryOut(downloads.originFinished(requestId, stripe: stripe, error: error, complete: prepared[requestId]?.partial.isComplete == true))
        }
    }

    /// The server withdrew content: stop sending it, stop getting it, delete it, stop announcing it.
    func withdraw(_ withdrawal: ContentWithdrawn) {
        let id = withdrawal.contentId
        for link in sending.values where link.open.content.contentId == id { finishSending(link, outcome: .cancelled, reason: FinishReason.withdrawn.rawValue) }
        carryOut(downloads.withdrawn(id, reason: withdrawal.reason))
        guard store.holds(id) || FileManager.default.fileExists(atPath: store.root.appendingPathComponent(id.hex).path) else { return }
        store.remove(id)
        count(.contentWithdrawn)
        shell.publish(EventData.ContentEvicted(deviceId: config.deviceId.rawValue, contentId: id.hex, reason: "withdrawn"))
        nextAnnounce = .now
    }

    /// Evicts least recently used content until `size` more bytes fit the store quota. Content
    /// being sent or downloaded is never evicted; false when even that leaves too little room.
    func makeRoom(for requestId: RequestID, size: UInt64) -> Bool {
        guard config.storeQuotaBytes > 0 else { return true }
        let held = store.usage()
        let reservations = downloads.reservations
        let reserved = reservations.filter { $0.requestId != requestId && !store.holds($0.contentId) }.reduce(UInt64(0)) { $0 + $1.bytes }
        let protected = Set(sending.values.map(\.open.content.contentId)).union(reservations.map(\.contentId))
        guard let victims = StoreEviction.victims(held: held, inUse: held.reduce(0) { $0 + $1.bytes } + reserved, needed: size,
                                                  quota: config.storeQuotaBytes, protected: protected) else { return false }
        for victim in victims {
            store.remove(victim)
            count(.contentEvicted)
            shell.publish(EventData.ContentEvicted(deviceId: config.deviceId.rawValue, contentId: victim.hex, reason: "storage-quota",
                                                   quotaBytes: config.storeQuotaBytes))
        }
        if !victims.isEmpty { nextAnnounce = .now }
        return true
    }

    // MARK: the end of a download

    /// The core found the download verified whole: the file becomes the store's copy.
    func finalize(_ requestId: RequestID) {
        guard let content = prepared[requestId] else { return carryOut(downloads.finalizeFailed(requestId, error: "nothing prepared to finalize")) }
        let contentId = content.manifest.contentId
        if store.holds(contentId) { return carryOut(downloads.finalized(requestId, path: store.dataURL(contentId).path)) }
        // Its fsync and rename take a while on a real disk: on side work, so the sessions this
        // device feeds get its last chunks meanwhile. Nothing writes the file any more.
        let partial = content.partial, mailbox = self.mailbox
        shell.sideWork.submit {
            do {
                mailbox.post(.finalized(requestId, path: try partial.finish().path, error: nil))
            } catch {
                mailbox.post(.finalized(requestId, path: nil, error: "\(error)"))
            }
        }
    }

    /// Reports the completion (step i) and hands each waiting client its copy.
    func handOver(_ done: Downloads.Completed) {
        prepared[done.requestId] = nil
        store.touch(done.contentId)
        Counter(label: "ferry_agent_received_bytes_total", dimensions: [("source", "peer")]).increment(by: Int64(done.peerBytes))
        Counter(label: "ferry_agent_received_bytes_total", dimensions: [("source", "origin")]).increment(by: Int64(done.originBytes))
        Metrics.Timer(label: "ferry_agent_download_duration_seconds", preferredDisplayUnit: .seconds).recordSeconds(done.seconds)
        let completion = Completion(requestId: done.requestId, deviceId: config.deviceId, contentId: done.contentId, size: done.size,
                                    sources: done.sources, startedAt: done.startedAt, finishedAt: Timestamp.now())
        do {
            if try !reporter.send(try completion.frames(), dontWait: true) { count(.completionsUnsent) }
        } catch {
            count(.completionsUnsent)
        }
        for waiter in done.waiters {
            let result = GetResult(requestId: done.requestId, contentId: done.contentId, ok: true, error: nil, path: nil, sources: done.sources,
                                   seconds: done.seconds)
            guard let mirror = mirror(done.requestId, for: waiter), mirror.schedule.state != .failed else {
                answer(waiter.client, copying: done.path, to: waiter.output, result)
                continue
            }
            if let action = mirror.schedule.whole(OutputAnswer(result: result, path: done.path)) { carryOut(action, mirror, done.requestId) }
        }
        // Mirrors still copying finish when their copy ends; the failed ones are done with.
        for mirror in mirrors[done.requestId] ?? [] where mirror.schedule.state == .failed {
            journal.discard(mirror.temporary)
            forget(mirror, of: done.requestId)
        }
        nextAnnounce = .now
    }

    // MARK: outputs copied while downloading

    /// Starts mirroring each waiting output of a download under way, and copies what is newly
    /// verified in order.
    func mirrorOutputs() {
        for (requestId, content) in prepared {
            guard let download = downloads.all[requestId] else { continue }
            for waiter in download.waiters {
                guard let output = waiter.output, mirror(requestId, for: waiter) == nil,
                      let mirror = try? OutputMirror(client: waiter.client, output: output, partial: content.partial) else { continue }
                journal.begin(mirror.temporary)
                mirrors[requestId, default: []].append(mirror)
            }
            for mirror in mirrors[requestId] ?? [] {
                guard var prefix = mirror.schedule.copiedChunks else { continue }
                while prefix < mirror.chunkCount && content.partial.isVerified(prefix) { prefix += 1 }
                if let action = mirror.schedule.verified(prefix: prefix) { carryOut(action, mirror, requestId) }
            }
        }
    }

    /// A mirror's copy, on side work: a batch into the temporary file, or the rest of it and
    /// the rename, then the answer (made the ordinary way should that fail).
    func carryOut(_ action: OutputSchedule<OutputAnswer>.Action, _ mirror: OutputMirror, _ requestId: RequestID) {
        // What the side work needs, not the mirror, which only the loop touches.
        let mailbox = self.mailbox, journal = self.journal, source = mirror.source, temporary = mirror.temporary, output = mirror.output
        let client = mirror.client
        switch action {
        case .copy(let chunks):
            let span = mirror.bytes(chunks)
            shell.sideWork.submit {
                do {
                    try OutputMirror.copy(span, from: source, into: temporary)
                    mailbox.post(.mirrored(requestId, temporary: temporary, error: nil))
                } catch {
                    mailbox.post(.mirrored(requestId, temporary: temporary, error: "\(error)"))
                }
            }
        case .finish(let from, let answer):
            forget(mirror, of: requestId)
            let span = mirror.bytes(from..<mirror.chunkCount)
            shell.sideWork.submit {
                var result = answer.result
                do {
                    try OutputMirror.copy(span, from: source, into: temporary)
                    try moveIntoPlace(URL(fileURLWithPath: temporary), URL(fileURLWithPath: output))
                    journal.end(temporary)
                    result.path = output
                } catch {
                    journal.discard(temporary)
                    do {
                        try journal.copy(from: answer.path, to: output)
                        result.path = output
                    } catch {
                        (result.ok, result.error) = (false, "\(error)")
                    }
                }
                source.close()
                mailbox.post(.answered(client: client, result))
            }
        }
    }

    /// A mirror's batch was copied (or failed to be): the next step, or, for a mirror whose
    /// download ended meanwhile, its temporary file removed.
    func mirrored(_ requestId: RequestID, temporary: String, error: String?) {
        guard let mirror = mirrors[requestId]?.first(where: { $0.temporary == temporary }) else {
            journal.discard(temporary)
            return
        }
        guard let error else {
            if let action = mirror.schedule.copied() { carryOut(action, mirror, requestId) }
            return
        }
        logger.warning("output copied at the end instead", metadata: ["request.id": "\(requestId)", "output": "\(mirror.output)", "error": "\(error)"])
        let waiting = mirror.schedule.state
        mirror.schedule.failed()
        journal.discard(temporary)
        // Its download completed while the batch was copied: answer the ordinary way.
        if case .copying(_, let then?) = waiting {
            forget(mirror, of: requestId)
            answer(mirror.client, copying: then.path, to: mirror.output, then.result)
        }
    }

    func mirror(_ requestId: RequestID, for waiter: Downloads.Waiter) -> OutputMirror? {
        mirrors[requestId]?.first { $0.client == waiter.client && $0.output == waiter.output }
    }

    func forget(_ mirror: OutputMirror, of requestId: RequestID) {
        mirrors[requestId]?.removeAll { $0 === mirror }
        if mirrors[requestId]?.isEmpty == true { mirrors[requestId] = nil }
    }

    /// A download that failed, or an agent stopping: no output comes of its mirrors. A copy
    /// still running removes its temporary file when it reports (`mirrored`).
    func dropMirrors(_ requestId: RequestID) {
        for mirror in mirrors.removeValue(forKey: requestId) ?? [] {
            if case .copying = mirror.schedule.state { continue }
            journal.discard(mirror.temporary)
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
        let contentId = open.content.contentId
        let manifest = store.manifest(contentId), key = store.contentKey(contentId)
        // Still getting it: the swarm's plan put this device ahead of the receiver.
        let whole = store.holds(contentId)
        let growing = whole ? nil : prepared.values.first { $0.manifest.contentId == contentId }
        switch SendingAdmission.decide(open, serving: config.serving, held: whole || growing != nil, hasKey: key != nil,
                                       verified: manifest?.summary) {
        case .refuse(let reason):
            return sendToBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: .sender, outcome: .failed,
                                                payloadBytes: 0, reason: reason.rawValue))
        case .layoutMismatch:
            return carryOut(Downloads.refuseLayout(open, role: .sender, verified: manifest?.summary, deviceId: config.deviceId))
        case .send:
            break
        }
        guard let manifest, let key else { return }
        do {
            // Through this device's own relay: its local endpoint, if it has one, where no CURVE is
            // needed (the packets are sealed, and the hop never leaves the host).
            let relayKey = try relayKey(for: open)
            let local = open.relays.first == config.forwarder ? config.forwarderLocal : nil
            let link = try SendingLink(open: open, file: try growing?.partial.openForReading() ?? store.openForReading(contentId),
                                       growing: growing?.partial, onward: growing?.onward,
                                       key: key.packetKey(for: manifest.summary), context: context, idleTimeout: linkIdleTimeout,
                                       security: local == nil ? config.security : .off, relayKey: relayKey, endpoint: local)
            sending[open.sessionId] = link
            store.touch(open.content.contentId)
            count(.sessionsSending)
            shell.publish(EventData.LinkSpawned(role: "sender", deviceId: config.deviceId.rawValue, address: open.address,
                                                relayEndpoint: local ?? open.relayEndpoint, peerAddress: open.peerAddress),
                          requestId: open.requestId, sessionId: open.sessionId)
        } catch {
            sendToBroker(SessionFinished(sessionId: open.sessionId, requestId: open.requestId, role: .sender, outcome: .failed,
                                         payloadBytes: 0, reason: "link-spawn-failed: \(error)"))
        }
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
                if let (outcome, reason) = link.schedule.finished { return finishSending(link, outcome: outcome, reason: reason) }
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
        shell.publish(EventData.LinkClosed(role: "sender", deviceId: config.deviceId.rawValue, reason: reason ?? outcome.rawValue,
                                           packets: link.link.counters.packetsForwarded, payloadBytes: link.link.counters.payloadBytesForwarded),
                      requestId: link.open.requestId, sessionId: link.open.sessionId)
    }

    // MARK: timers

    func tick() {
        let now = ContinuousClock.now
        if now >= nextHeartbeat {
            nextHeartbeat = now + heartbeat
            if now - lastHeardFromBroker > heartbeat * 3 { sendToBroker(hello) }
            sendToBroker(Heartbeat(load: sending.count))
        }
        if holdings.takeSubscriptions() { nextAnnounce = now }
        if now >= nextAnnounce { announce() }
        for (sessionId, link) in receivers {
            if let by = link.firstDataBy, now >= by {
                carryOut(downloads.linkStalled(sessionId, silent: true))
            } else if link.link.isIdle(at: now) {
                carryOut(downloads.linkStalled(sessionId, silent: false))
            }
        }
        carryOut(downloads.tick(now: now))
        mirrorOutputs()
        for link in sending.values where link.link.isIdle(at: now) {
            finishSending(link, outcome: .failed, reason: FinishReason.linkIdle.rawValue)
        }
    }

    func announce() {
        announceSequence += 1
        let held = store.holdings(), whole = Set(held)
        let partial = prepared.values.filter { !whole.contains($0.manifest.contentId) }.prefix(1_000)
            .map { PartialHolding(contentId: $0.manifest.contentId, chunks: $0.partial.verifiedCount, of: $0.manifest.summary.chunkCount) }
        let interval = partial.isEmpty || config.progressMilliseconds == 0 ? config.announceMilliseconds
            : min(config.announceMilliseconds, config.progressMilliseconds)
        nextAnnounce = .now + .milliseconds(interval)
        let announcement = HoldingsAnnouncement(deviceId: config.deviceId, sequence: announceSequence, contents: held,
                                                serving: config.serving, activeUploads: sending.count, zone: config.zone,
                                                intervalMilliseconds: interval, partial: partial.isEmpty ? nil : partial)
        guard let frames = try? announcement.frames() else { return }
        _ = try? holdings.send([Data(HoldingsAnnouncement.topic.utf8)] + frames, dontWait: true)
    }

    var hello: AgentHello { AgentHello(deviceId: config.deviceId, zone: config.zone, forwarder: config.forwarder) }

    func sendToBroker<M: WireMessage>(_ message: M) {
        do {
            if try !broker.send(try message.frames(), dontWait: true) { count(.brokerUnsent) }
        } catch {
            count(.brokerUnsent)
        }
    }

    func status() -> StatusReport {
        var fields = counters.byName
        fields["downloads"] = JSONValue(downloads.all.count)
        fields["welcomed"] = .bool(welcomed)
        fields["sending"] = JSONValue(sending.count)
        fields["holdings"] = .array(store.holdings().map { .string($0.hex) })
        fields["sendingLinks"] = .array(sending.values.map {
            .object(["sessionId": .string($0.open.sessionId.hex), "packetsSent": JSONValue($0.schedule.credit.nextSequence),
                     "creditLimit": JSONValue($0.schedule.credit.limit), "window": JSONValue($0.schedule.credit.window)])
        })
        fields["downloadProgress"] = .array(downloads.all.values.map {
            .object(["requestId": .string($0.requestId.rawValue), "receivedBytes": JSONValue($0.receivedBytes), "totalBytes": JSONValue($0.size),
                     "source": .string($0.source)])
        })
        return StatusReport(service: "agent", id: config.deviceId.rawValue, startedAt: startedAt, counters: fields)
    }
}
