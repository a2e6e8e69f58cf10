import ArgumentParser
import FerryIntake
import FerryService
import Logging
import ServiceLifecycle

@main
struct IntakeCommand: ServiceCommand {
    static let service = ServiceName.intake
    static let abstract = "Request intake: PULLs download requests from servers, validates them, PUSHes them to matching."

    struct Options: ServiceOptions {
        @OptionGroup var common: CommonOptions

        @Option(help: Topology.intake.bindHelp("PULL bind address servers push requests to."))
        var bind = Topology.intake.bindEndpoint

        @Option(help: Topology.matcher.connectHelp("The matcher's PULL endpoint."))
        var matcher = Topology.matcher.connectEndpoint

        @Option(help: Topology.intakeStatus.bindHelp("Status socket the probe asks."))
        var statusBind = Topology.intakeStatus.bindEndpoint

        @Option(help: Settings.intakeAllow.help)
        var allow = Settings.intakeAllow.value
    }

    static func services(_ options: Options, logger: Logger) throws -> [any Service] {
        [Intake.service(IntakeConfig(bind: options.bind, matcher: options.matcher, eventsIn: options.common.eventsIn, statusBind: options.statusBind,
                                     security: try options.common.transport(role: .intake, allowListFile: options.allow, logger: logger)),
                        logger: logger)]
    }

    static func probe(_ options: Options) throws { try ProbeCommand.run(connectable(options.statusBind)) }
}
