import ArgumentParser
import FerryReporter
import FerryService
import Foundation
import Logging
import ServiceLifecycle

@main
struct ReporterCommand: ServiceCommand {
    static let service = ServiceName.reporter
    static let abstract = "Completion reporter: checks completions, records them in the ledger and delivers them to the server."

    struct Options: ServiceOptions {
        @OptionGroup var common: CommonOptions

        @Option(help: Topology.reporter.bindHelp("PULL bind address agents push completions and the broker pushes records to."))
        var bind = Topology.reporter.bindEndpoint

        @Option(help: "SQLite ledger file. Env: FERRY_LEDGER_PATH.")
        var ledger = Env.string("FERRY_LEDGER_PATH", "./run/reporter/ledger.sqlite")

        @Option(help: "Milliseconds a completion waits for the broker's closing record. Env: FERRY_VERIFY_WAIT_MS.")
        var verifyWaitMs = Env.int("FERRY_VERIFY_WAIT_MS", 15_000)

        @Option(help: "Days acknowledged fulfilments stay in the ledger (0 keeps them forever). Env: FERRY_LEDGER_RETENTION_DAYS.")
        var retentionDays = Env.int("FERRY_LEDGER_RETENTION_DAYS", 90)

        @Option(help: "Without transport keys: the Ed25519 key file deliveries are signed with (made on first start; its public half is written beside it as .pub, for the origin's --reporter-key); empty: reporter-signing.key beside the ledger. With keys the fleet's reporter-signing key is used. Env: FERRY_REPORTER_SIGNING_KEY.")
        var signingKey = Env.string("FERRY_REPORTER_SIGNING_KEY", "")

        @Option(help: Topology.reporterStatus.bindHelp("Status socket the probe asks."))
        var statusBind = Topology.reporterStatus.bindEndpoint
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        let security = try options.common.transport(role: .reporter, logger: logger)
        let signingKey = options.signingKey.isEmpty
            ? URL(fileURLWithPath: options.ledger).deletingLastPathComponent().appendingPathComponent("reporter-signing.key").path
            : options.signingKey
        return try Reporter.services(ReporterConfig(bind: options.bind, eventsIn: options.common.eventsIn, ledgerPath: options.ledger,
                                                    verifyWaitMilliseconds: options.verifyWaitMs, statusBind: options.statusBind,
                                                    retentionDays: options.retentionDays,
                                                    signingKey: try Reporter.signingKey(security: security, file: signingKey),
                                                    security: security), logger: logger)
    }

    static func probe(_ options: Options) throws { try ProbeCommand.run(connectable(options.statusBind)) }
}
