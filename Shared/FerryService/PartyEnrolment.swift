import FerryProtocol
import FerryTrust
import Foundation
import Logging

/// Enrols a device's or relay's keys at the origin (`POST /v1/devices`) with a join token,
/// again and again until the origin has them: it may not be up yet, or the token file not
/// written. A party the origin already knows proves itself with its key (`GET
/// /v1/devices/me`, signed) and never reads a token again, so a restart needs none. A refusal
/// is logged and retried slowly, since the operator can fix it (a new token) without
/// restarting the party.
public enum PartyEnrolment {
    public static func start(origin: URL, id: String, kind: PartyKind, keys: DeviceKeys, token: @escaping @Sendable () -> String?,
                             logger: Logger, stop: StopSignal, on work: SideWork) {
        work.submit {
            var refusedBefore = false
            while !stop.isRequested {
                var wait = 1.0
                do {
                    switch try known(origin: origin, id: id, keys: keys) {
                    case .yes:
                        logger.info("enrolled at the origin", metadata: ["origin": "\(origin)", "kind": "\(kind.rawValue)", "by": "key"])
                        return
                    case .refused(let why):
                        if !refusedBefore { logger.error("the origin refuses this \(kind.rawValue): \(why)") }
                        refusedBefore = true
                        wait = 10
                    case .no:
                        if let token = token() {
                            let body = try JSONCoding.encoder.encode(DeviceEnrolment(deviceId: DeviceID(id), signingKey: keys.signingPublicKey,
                                                                                      agreementKey: keys.agreementPublicKey, token: token,
                                                                                      kind: kind == .device ? nil : kind))
                            let response = try BlockingHTTP.post(origin.appendingPathComponent("v1/devices"), json: body, timeout: 10)
                            if response.ok {
                                logger.info("enrolled at the origin", metadata: ["origin": "\(origin)", "kind": "\(kind.rawValue)", "by": "token"])
                                return
                            }
                            if !refusedBefore { logger.error("the origin refused to enrol this \(kind.rawValue): \(reason(response))") }
                            refusedBefore = true
                            wait = 10
                        } else if !refusedBefore {
                            logger.warning("no join token (FERRY_JOIN_TOKEN or its file): this \(kind.rawValue) can't enrol yet")
                            refusedBefore = true
                        }
                    }
                } catch {
                    logger.debug("cannot enrol yet: \(error)")
                }
                let until = Date().addingTimeInterval(wait)
                while Date() < until, !stop.isRequested { Thread.sleep(forTimeInterval: 0.1) }
            }
        }
    }

    enum Known { case yes, no, refused(String) }

    /// Whether the origin already knows this party by its key.
    static func known(origin: URL, id: String, keys: DeviceKeys) throws -> Known {
        let path = "/v1/devices/me"
        let authorization = try keys.authorization(deviceId: DeviceID(id), method: "GET", path: path, nowMilliseconds: SessionTokens.nowMilliseconds())
        let response = try BlockingHTTP.get(origin.appendingPathComponent("v1/devices/me"), headers: ["Authorization": authorization], timeout: 10)
        if response.ok { return .yes }
        let body = try? JSONCoding.decoder.decode(ErrorBody.self, from: response.body)
        switch body?.reason {
        case "not-enrolled": return .no
        case "device-revoked": return .refused(reason(response))
        default: throw HTTPError("origin answered \(response.status) to \(path)")
        }
    }

    /// What the origin said when it refused.
    public static func reason(_ response: HTTPResponse) -> String {
        if let body = try? JSONCoding.decoder.decode(ErrorBody.self, from: response.body) { return "\(body.reason): \(body.error)" }
        return "origin answered \(response.status)"
    }
}
