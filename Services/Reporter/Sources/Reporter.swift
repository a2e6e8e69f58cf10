import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import Logging
import Metrics
import ZeroMQ

public struct ReporterConfig: Sendable {
    public var bind: String
    public var eventsIn: String
    public var ledgerPath: String
    /// How long a completion waits for the broker's closing record before it is recorded unverified.
    public var verifyWaitMilliseconds: Int
    public var statusBind: String
    /// Acknowledged fulfilments older than this many days are deleted; 0 keeps them forever.
    public var retentionDays: Int
    public var security: TransportSecurity
    /// Signs every delivery, so the server records fulfilments from the reporter only.
    public var signingKey: SigningKey
    public init(bind: String, eventsIn: String, ledgerPath: String, verifyWaitMilliseconds: Int, statusBind: String, retentionDays: Int,
                signingKey: SigningKey, security: TransportSecurity = .off) {
        self.security = security
        self.signingKey = signingKey
        self.retentionDays = retentionDays
        self.bind = bind
        self.eventsIn = eventsIn
        self.ledgerPath = ledgerPath
        self.verifyWaitMilliseconds = verifyWaitMilliseconds
        self.statusBind = statusBind
    }
}

/// Step (i): records completions in the ledger once checked, then delivers each to the server
/// that made the request until it acknowledges (at least once on the wire, once in the
/// server's records, because both sides key on the request id).
public enum Reporter {
    /// The key deliveries are signed with: the fleet's `reporter-signing` key with transport
    /// keys; otherwise `file` (made on first start), whose public half is written beside it as
    /// `.pub` for the origin to be given.
    public static func signingKey(security: TransportSecurity, file: String) throws -> SigningKey {
        if let fleet = security.fleet {
            return try fleet.secretSigningKey(.reporter)
        }
        let url = URL(fileURLWithPath: file)
        let key = try SigningKey.loadOrCreate(at: url)
        try Data((key.publicKey + "\n").utf8).write(to: url.deletingPathExtension().appendingPathExtension("pub"))
        return key
    }

    public static func services(_ config: ReporterConfig, logger: Logger) throws -> [LoopService] {
        let ledger = try Ledger(path: config.ledgerPath)
        return [
            LoopService(name: "reporter") { stop in try runIntake(config, ledger: ledger, logger: logger, stop: stop) },
            LoopService(name: "reporter-outbox") { stop in try runOutbox(config, ledger: ledger, logger: logger, stop: stop) },
        ]
    }

    static func runIntake(_ config: ReporterConfig, ledger: Ledger, logger: Logger, stop: StopSignal) throws {
        let context = try Context()
        let gate = try config.security.gate(context: context, service: "reporter", logger: logger)
        defer { gate?.close() }
        let inbox = try context.socket(.pull)
        try config.security.bind(inbox, config.bind, as: Topology.reporter)
        let events = try EventPublisher(context: context, endpoint: config.eventsIn, publisher: "reporter", logger: logger,
                                        security: config.security, gate: gate)
        let status = try StatusResponder(context: context, bind: config.statusBind)
        let startedAt = Timestamp.now()
        let wait = TimeInterval(config.verifyWaitMilliseconds) / 1000
        logger.info("reporter up", metadata: ["bind": "\(config.bind)", "ledger": "\(config.ledgerPath)"])

        func settle(_ completion: Completion, receivedAt: Date) throws {
            let record = try ledger.record(for: completion.requestId)
            let verdict = FulfilmentCheck.evaluate(completion, record: record, waitedLongEnough: Date().timeIntervalSince(receivedAt) >= wait)
            switch verdict {
            case .wait:
                try ledger.park(completion, at: receivedAt)
            case .reject(let reason):
                try ledger.unpark(completion.requestId, device: completion.deviceId)
                events.publish(.fulfilmentRejected, requestId: completion.requestId, [
                    "reason": .string(reason), "deviceId": .string(completion.deviceId.rawValue)])
            case .record(let fulfilment, let server):
                if try ledger.insert(fulfilment, server: server) {
                    Counter(label: "ferry_fulfilments_total", dimensions: [("verification", fulfilment.verification.rawValue)]).increment()
                    Counter(label: "ferry_fulfilment_bytes_total", dimensions: [("source", "peers")]).increment(by: Int64(fulfilment.bytesFromPeers))
                    Counter(label: "ferry_fulfilment_bytes_total", dimensions: [("source", "origin")]).increment(by: Int64(fulfilment.bytesFromOrigin))
                    events.publish(.fulfilmentRecorded, requestId: fulfilment.requestId, sessionId: record?.sessions.last?.sessionId, [
                        "deviceId": .string(fulfilment.deviceId.rawValue), "contentId": .string(fulfilment.contentId.hex),
                        "bytesFromPeers": JSONValue(fulfilment.bytesFromPeers), "bytesFromOrigin": JSONValue(fulfilment.bytesFromOrigin),
                        "verification": .string(fulfilment.verification.rawValue), "server": .string(server),
                        "sources": .array(fulfilment.sources.map { source in
                            .string(source.kind == .peer ? "peer:\(source.device?.rawValue ?? "?")" : source.kind.rawValue)
                        })])
                } else {
                    events.publish(.fulfilmentDuplicate, requestId: fulfilment.requestId, ["deviceId": .string(fulfilment.deviceId.rawValue)])
                }
            }
        }

        var dropped = 0
        let droppedMetric = Counter(label: "ferry_reporter_dropped_total")
        var lastSweep = Date()
        var nextPurge = Date()
        while !stop.isRequested {
            if config.retentionDays > 0, Date() >= nextPurge {
                nextPurge = Date().addingTimeInterval(3600)
                let purged = try ledger.purge(acknowledgedBefore: Date().addingTimeInterval(-Double(config.retentionDays) * 86_400))
                if purged > 0 { logger.info("ledger retention", metadata: ["purged": "\(purged)", "days": "\(config.retentionDays)"]) }
            }
            var poller = Poller()
            poller.add(inbox)
            try poller.poll(timeoutMilliseconds: 200)
            events.flush()
            status.answer {
                let counts = (try? ledger.counts()) ?? (fulfilments: 0, unacknowledged: 0, awaitingRecords: 0)
                return StatusReport(service: "reporter", id: "reporter", startedAt: startedAt, counters: [
                    "fulfilments": JSONValue(counts.fulfilments), "awaitingAcknowledgement": JSONValue(counts.unacknowledged),
                    "awaitingRecords": JSONValue(counts.awaitingRecords), "dropped": JSONValue(dropped)])
            }
            while let frames = try inbox.receive(dontWait: true) {
                do {
                    let envelope = try Envelope(frames: frames.map(\.data))
                    // With keys, who sent it is known: a device reports its own completions and
                    // only the broker's records are the witness the check relies on.
                    let sender = config.security.isOn ? frames.first?.peer : nil
                    switch envelope.kind {
                    case Completion.kind:
                        let completion = try envelope.decode(Completion.self)
                        if let sender, sender != .device(completion.deviceId.rawValue) {
                            throw WireError.invalid("completion for \(completion.deviceId) sent by \(sender)")
                        }
                        if try ledger.hasFulfilment(completion.requestId) {
                            events.publish(.fulfilmentDuplicate, requestId: completion.requestId, ["deviceId": .string(completion.deviceId.rawValue)])
                        } else {
                            try settle(completion, receivedAt: Date())
                        }
                    case RequestRecord.kind:
                        let record = try envelope.decode(RequestRecord.self)
                        if let sender, sender != .fleet(FleetRole.broker.rawValue) { throw WireError.invalid("request record sent by \(sender), not the broker") }
                        try ledger.save(record)
                        for (completion, receivedAt) in try ledger.parkedCompletions(record.requestId) {
                            try settle(completion, receivedAt: receivedAt)
                        }
                    default:
                        throw WireError.unknownKind(envelope.kind)
                    }
                } catch {
                    logger.warning("message refused: \(error)")
                    dropped += 1
                    droppedMetric.increment()
                    events.publish(.messageDropped, ["service": "reporter", "reason": .string("\(error)")])
                }
            }
            if Date().timeIntervalSince(lastSweep) > 0.5 {
                lastSweep = Date()
                for (completion, receivedAt) in try ledger.parked() where Date().timeIntervalSince(receivedAt) >= wait {
                    try settle(completion, receivedAt: receivedAt)
                }
            }
        }
        logger.info("reporter stopped")
    }

    static func runOutbox(_ config: ReporterConfig, ledger: Ledger, logger: Logger, stop: StopSignal) throws {
        let context = try Context()
        let events = try EventPublisher(context: context, endpoint: config.eventsIn, publisher: "reporter.outbox", logger: logger,
                                        security: config.security)
        while !stop.isRequested {
            events.flush()
            let due = try ledger.due()
            if due.isEmpty {
                Thread.sleep(forTimeInterval: 0.1)
                continue
            }
            for delivery in due where !stop.isRequested {
                let requestId = delivery.fulfilment.requestId
                do {
                    guard let url = URL(string: delivery.server)?.appendingPathComponent("v1/fulfilments") else {
                        throw HTTPError("server \(delivery.server) is not a URL")
                    }
                    let body = try JSONCoding.encoder.encode(delivery.fulfilment)
                    let signature = try DeliverySignature.sign(body, with: config.signingKey, nowMilliseconds: SessionTokens.nowMilliseconds())
                    let response = try BlockingHTTP.post(url, json: body, headers: [DeliverySignature.header: signature], timeout: 10)
                    guard response.ok else { throw HTTPError("server answered \(response.status)") }
                    let ack = try? JSONCoding.decoder.decode(FulfilmentAck.self, from: response.body)
                    try ledger.acknowledged(requestId)
                    Counter(label: "ferry_deliveries_total", dimensions: [("result", "acknowledged")]).increment()
                    events.publish(.fulfilmentAcknowledged, requestId: requestId, [
                        "server": .string(delivery.server), "attempts": JSONValue(delivery.attempts + 1), "duplicate": .bool(ack?.duplicate ?? false)])
                } catch {
                    // Back off, doubling from half a second to half a minute, and keep trying.
                    let delay = min(30, 0.5 * pow(2, Double(min(delivery.attempts, 10))))
                    try ledger.attemptFailed(requestId, error: "\(error)", retryAt: Date().addingTimeInterval(delay))
                    Counter(label: "ferry_deliveries_total", dimensions: [("result", "failed")]).increment()
                    events.publish(.fulfilmentDeliveryFailed, requestId: requestId, [
                        "server": .string(delivery.server), "attempts": JSONValue(delivery.attempts + 1), "error": .string("\(error)"),
                        "retryInSeconds": .number(delay)])
                }
            }
        }
    }
}
