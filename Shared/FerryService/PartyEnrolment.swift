import FerryProtocol
import FerryTrust
import Foundation
import Logging

/// Enrols a device's or relay's keys at the origin (`POST /v1/devices`), again and again
/// until the origin has them: it may not be up yet, or the credential file not written. A
/// refusal is logged and retried slowly, since the operator can fix it (a new credential)
/// without restarting the party.
public enum PartyEnrolment {
    public static func start(origin: URL, id: String, kind: PartyKind, keys: DeviceKeys, credential: @escaping @Sendable () -> String?,
                             logger: Logger, stop: StopSignal) {
        Thread.detachNewThread {
            let url = origin.appendingPathComponent("v1/devices")
            var refusedBefore = false
            while !stop.isRequested {
                var wait = 1.0
                if let credential = credential() {
                    do {
                        let body = try JSONCoding.encoder.encode(DeviceEnrolment(deviceId: DeviceID(id), signingKey: keys.signingPublicKey,
                                                                                  agreementKey: keys.agreementPublicKey, credential: credential,
                                                                                  kind: kind == .device ? nil : kind))
                        let response = try BlockingHTTP.post(url, json: body, timeout: 10)
                        if response.ok {
                            logger.info("enrolled at the origin", metadata: ["origin": "\(origin)", "kind": "\(kind.rawValue)"])
                            return
                        }
                        if !refusedBefore { logger.error("the origin refused to enrol this \(kind.rawValue): \(reason(response))") }
                        refusedBefore = true
                        wait = 10
                    } catch {
                        logger.debug("cannot enrol yet: \(error)")
                    }
                } else if !refusedBefore {
                    logger.warning("no enrolment credential (FERRY_ENROLMENT_CREDENTIAL or its file): this \(kind.rawValue) can't enrol yet")
                    refusedBefore = true
                }
                let until = Date().addingTimeInterval(wait)
                while Date() < until, !stop.isRequested { Thread.sleep(forTimeInterval: 0.1) }
            }
        }
    }

    /// What the origin said when it refused.
    public static func reason(_ response: HTTPResponse) -> String {
        if let body = try? JSONCoding.decoder.decode(ErrorBody.self, from: response.body) { return "\(body.reason): \(body.error)" }
        return "origin answered \(response.status)"
    }
}
