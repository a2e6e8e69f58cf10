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

        @Option(help: Settings.ledgerPath.help)
        var ledger = Settings.ledgerPath.value

        @Option(help: Settings.verifyWaitMs.help)
        var verifyWaitMs = Settings.verifyWaitMs.value

        @Option(help: Settings.ledgerRetentionDays.help)
        var retentionDays = Settings.ledgerRetentionDays.value

        @Option(help: Settings.reporterSigningKey.help)
        var signingKey = Settings.reporterSigningKey.value

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
