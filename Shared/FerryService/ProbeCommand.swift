import ArgumentParser
import FerryProtocol
import Foundation
import ZeroMQ

/// What every binary's `probe` subcommand does: ask the running service, print one line, and
/// exit 0 when it is serving, 1 when it is not. It is the compose healthcheck.
public enum ProbeCommand {
    /// `require`: a check on the report beyond "it answered", e.g. that a relay is enrolled.
    public static func run(_ endpoint: String, security: TransportSecurity = .off, serverKey: [UInt8]? = nil,
                           require: (StatusReport) -> String? = { _ in nil }) throws {
        do {
            let report = try StatusProbe.ask(endpoint, context: try Context(), security: security, serverKey: serverKey)
            if let problem = require(report) {
                print("\(report.service) \(report.id): not serving: \(problem)")
                throw ExitCode(1)
            }
            print("\(report.service) \(report.id): serving since \(report.startedAt)")
        } catch let exit as ExitCode {
            throw exit
        } catch {
            print("not serving: \(error)")
            throw ExitCode(1)
        }
    }

    /// For services that must be welcomed by the broker before they can do anything.
    public static func welcomed(_ report: StatusReport) -> String? {
        report.counters["welcomed"] == .bool(true) ? nil : "not yet welcomed by the broker"
    }
}
