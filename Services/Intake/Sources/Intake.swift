import FerryProtocol
import FerryService
import Foundation
import Logging
import Metrics
import ZeroMQ

public struct IntakeConfig: Sendable {
    public var bind: String
    public var matcher: String
    public var eventsIn: String
    public var statusBind: String
    /// Servers outside the fleet are let in when their keys are on its allow list.
    public var security: TransportSecurity
    public init(bind: String, matcher: String, eventsIn: String, statusBind: String, security: TransportSecurity = .off) {
        self.security = security
        self.bind = bind
        self.matcher = matcher
        self.eventsIn = eventsIn
        self.statusBind = statusBind
    }
}

/// Step (a): PULLs download requests from servers, refuses what is malformed with a
/// `request.rejected` event (never a crash), recognises retries, and PUSHes the rest to matching.
/// `RequestAdmission` decides; this only moves the messages.
public enum Intake {
    public static func service(_ config: IntakeConfig, logger: Logger) -> LoopService {
        LoopService(name: "intake") { stop in try run(config, logger: logger, stop: stop) }
    }

    static func run(_ config: IntakeConfig, logger: Logger, stop: StopSignal) throws {
        let shell = try ServiceShell(.intake, security: config.security, eventsIn: config.eventsIn, statusBind: config.statusBind, logger: logger)
        let requests = try shell.bind(.pull, Topology.intake, at: config.bind)
        let matcher = try shell.connect(.push, to: config.matcher, .matcher, queue: 10_000)
        logger.info("intake up", metadata: ["bind": "\(config.bind)", "matcher": "\(config.matcher)"])

        var admission = RequestAdmission(noticesOnlyFromTheOrigin: config.security.isOn)
        func refuse(_ rejection: RequestAdmission.Rejection) {
            Counter(label: "ferry_intake_requests_total", dimensions: [("outcome", "rejected"), ("reason", rejection.reason.rawValue)]).increment()
            logger.warning("request rejected", metadata: ["reason": "\(rejection.reason.rawValue)", "detail": "\(rejection.detail ?? "")"])
            shell.publish(rejection.event, requestId: rejection.requestId)
        }
        try shell.run(until: stop, polling: [requests], counters: { admission.counters }) { _ in
            while let message = try requests.receive(dontWait: true) {
                switch admission.admit(message.map(\.data), from: message.first?.peer) {
                case .failure(let rejection):
                    refuse(rejection)
                case .success(let forward):
                    if let admitted = forward.admitted {
                        Counter(label: "ferry_intake_requests_total",
                                dimensions: [("outcome", admitted.topic == .requestReceived ? "accepted" : "retried")]).increment()
                        shell.publish(admitted.publication)
                    }
                    if try !matcher.send(forward.frames, dontWait: true), let admitted = forward.admitted {
                        refuse(admission.matchingFull(admitted.requestId))
                    }
                }
            }
        }
        logger.info("intake stopped", metadata: ["received": "\(admission.received)", "rejected": "\(admission.rejected)"])
    }
}
