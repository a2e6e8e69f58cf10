import ArgumentParser
import FerryProtocol
import FerryService
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The devices enrolled at the origin: list them, or revoke one fleet-wide.
struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the devices enrolled at the origin, or revoke one (`ferry devices revoke ID`).")

    @OptionGroup var operatorOptions: OperatorOptions

    @Argument(help: "`revoke` to revoke a device; nothing to list them.")
    var action: String?

    @Argument(help: "The device id to revoke.")
    var deviceId: String?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        switch action {
        case nil: break
        case "revoke": guard deviceId != nil else { throw ValidationError("revoke needs a device id") }
        default: throw ValidationError("unknown action \(action!); use `revoke ID` or nothing")
        }
    }

    func run() throws {
        if action == "revoke", let deviceId {
            let request = try operatorOptions.request("DELETE", "v1/devices/\(deviceId)")
            let response = try operatorOptions.answer { try BlockingHTTP.send(request) }
            if json { return print(String(decoding: response.body, as: UTF8.self)) }
            let device = try JSONCoding.decoder.decode(EnrolledDevice.self, from: response.body)
            return print("revoked \(device.deviceId) at \(device.revokedAt ?? "?")")
        }
        let devices: [EnrolledDevice] = try operatorOptions.all("v1/devices") { $0.deviceId.rawValue }
        if json { return print(String(decoding: try JSONCoding.encoder.encode(devices), as: UTF8.self)) }
        print("\(devices.count) enrolled")
        for device in devices {
            print("  \(device.deviceId)  \(device.kind.rawValue)  enrolled \(device.enrolledAt) with token \(device.tokenId ?? "none")  "
                  + "\(device.revokedAt.map { "REVOKED \($0)" } ?? "active")  key \(device.signingKey.prefix(12))…")
        }
    }
}
