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
        // One context, so the inbox can wake the outbox over inproc the moment it records.
        let context = try Context()
        let outbox = try Outbox(config, ledger: ledger, context: context, logger: logger)
        return [
            LoopService(name: "reporter") { stop in try runInbox(config, ledger: ledger, context: context, logger: logger, stop: stop) },
            LoopService(name: "reporter-outbox") { stop in try outbox.run(until: stop) },
        ]
    }

    static func runInbox(_ config: ReporterConfig, ledger: Ledger, context: Context, logger: Logger, stop: StopSignal) throws {
        let shell = try ServiceShell(.reporter, security: config.security, eventsIn: config.eventsIn, statusBind: config.statusBind,
                                     context: context, logger: logger)
        let inbox = try shell.bind(.pull, Topology.reporter, at: config.bind)
        let outbox = try context.socket(.push)
        try outbox.connect(Outbox.wakeEndpoint)
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
                shell.publish(EventData.FulfilmentRejected(reason: reason, deviceId: completion.deviceId.rawValue), requestId: completion.requestId)
            case .record(let fulfilment, let server):
                if try ledger.insert(fulfilment, server: server) {
                    // The outbox delivers it now rather than at its next look.
                    _ = try? outbox.send([Data()], dontWait: true)
                    Counter(label: "ferry_fulfilments_total", dimensions: [("verification", fulfilment.verification.rawValue)]).increment()
                    Counter(label: "ferry_fulfilment_bytes_total", dimensions: [("source", "peers")]).increment(by: Int64(fulfilment.bytesFromPeers))
                    Counter(label: "ferry_fulfilment_bytes_total", dimensions: [("source", "origin")]).increment(by: Int64(fulfilment.bytesFromOrigin))
                    shell.publish(EventData.FulfilmentRecorded(
                        deviceId: fulfilment.deviceId.rawValue, contentId: fulfilment.contentId.hex, bytesFromPeers: fulfilment.bytesFromPeers,
                        bytesFromOrigin: fulfilment.bytesFromOrigin, verification: fulfilment.verification.rawValue, server: server,
                        sources: fulfilment.sources.map { $0.kind == .peer ? "peer:\($0.device?.rawValue ?? "?")" : $0.kind.rawValue }),
                                  requestId: fulfilment.requestId, sessionId: record?.sessions.last?.sessionId)
                } else {
                    shell.publish(EventData.FulfilmentDuplicate(deviceId: fulfilment.deviceId.rawValue), requestId: fulfilment.requestId)
                }
            }
        }

        var dropped = 0
        let droppedMetric = Counter(label: "ferry_reporter_dropped_total")
        var lastSweep = Date()
        var nextPurge = Date()
        func counters() -> [String: JSONValue] {
            let counts = (try? ledger.counts()) ?? (fulfilments: 0, unacknowledged: 0, awaitingRecords: 0)
            return ["fulfilments": JSONValue(counts.fulfilments), "awaitingAcknowledgement": JSONValue(counts.unacknowledged),
                    "awaitingRecords": JSONValue(counts.awaitingRecords), "dropped": JSONValue(dropped)]
        }
        try shell.run(until: stop, polling: [inbox], counters: counters) { _ in
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
                            shell.publish(EventData.FulfilmentDuplicate(deviceId: completion.deviceId.rawValue), requestId: completion.requestId)
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
                    shell.publish(EventData.MessageDropped(service: "reporter", reason: "\(error)"))
                }
            }
        } tick: {
            if Date().timeIntervalSince(lastSweep) > 0.5 {
                lastSweep = Date()
                for (completion, receivedAt) in try ledger.parked() where Date().timeIntervalSince(receivedAt) >= wait {
                    try settle(completion, receivedAt: receivedAt)
                }
            }
            if config.retentionDays > 0, Date() >= nextPurge {
                nextPurge = Date().addingTimeInterval(3600)
                let purged = try ledger.purge(acknowledgedBefore: Date().addingTimeInterval(-Double(config.retentionDays) * 86_400))
                if purged > 0 { logger.info("ledger retention", metadata: ["purged": "\(purged)", "days": "\(config.retentionDays)"]) }
            }
        }
        logger.info("reporter stopped")
    }
}

/// Delivers recorded fulfilments to their servers until each acknowledges, backing off per
/// delivery. It sleeps until the next delivery is due or the inbox says it recorded one, so a
/// fulfilment leaves the moment it is recorded and an idle reporter doesn't poll the ledger.
final class Outbox: @unchecked Sendable {
    static let wakeEndpoint = "inproc://reporter-outbox"
    let config: ReporterConfig
    let ledger: Ledger
    let logger: Logger
    let context: Context
    /// Bound before the inbox's loop starts, so its wake-ups are never sent to nobody.
    let wake: Socket

    init(_ config: ReporterConfig, ledger: Ledger, context: Context, logger: Logger) throws {
        self.config = config
        self.ledger = ledger
        self.logger = logger
        self.context = context
        wake = try context.socket(.pull)
        try wake.bind(Self.wakeEndpoint)
    }

    func run(until stop: StopSignal) throws {
        let events = try EventPublisher(context: context, endpoint: config.eventsIn, publisher: "reporter.outbox", logger: logger,
                                        security: config.security)
        var poller = Poller()
        poller.add(wake)
        while !stop.isRequested {
            events.flush()
            // At most a second, for the stop signal and the event publisher's backlog.
            let untilDue = try ledger.nextAttemptAt().map { $0.timeIntervalSinceNow } ?? 1
            try poller.poll(timeoutMilliseconds: Int(max(0, min(1, untilDue)) * 1000))
            while try wake.receive(dontWait: true) != nil {}
            for delivery in try ledger.due() where !stop.isRequested {
                deliver(delivery, events: events)
            }
        }
    }

    private func deliver(_ delivery: Ledger.Delivery, events: EventPublisher) {
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
            events.publish(EventData.FulfilmentAcknowledged(server: delivery.server, attempts: delivery.attempts + 1, duplicate: ack?.duplicate ?? false),
                           requestId: requestId)
        } catch {
            // Back off, doubling from half a second to half a minute, and keep trying.
            let delay = min(30, 0.5 * pow(2, Double(min(delivery.attempts, 10))))
            do {
                try ledger.attemptFailed(requestId, error: "\(error)", retryAt: Date().addingTimeInterval(delay))
            } catch {
                logger.error("ledger: \(error)")
            }
            Counter(label: "ferry_deliveries_total", dimensions: [("result", "failed")]).increment()
            events.publish(EventData.FulfilmentDeliveryFailed(server: delivery.server, attempts: delivery.attempts + 1, error: "\(error)",
                                                              retryInSeconds: delay), requestId: requestId)
        }
    }
}
