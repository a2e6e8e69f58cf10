import ArgumentParser
import FerryIntake
import FerryService

@main
struct IntakeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-intake",
        abstract: "Request intake: PULLs download requests from servers, validates them, PUSHes them to matching.",
        subcommands: [Run.self, Probe.self], defaultSubcommand: Run.self)

    struct Options: ParsableArguments {
        @OptionGroup var common: CommonOptions

        @Option(help: Topology.intake.bindHelp("PULL bind address servers push requests to."))
        var bind = Topology.intake.bindEndpoint

        @Option(help: Topology.matcher.connectHelp("The matcher's PULL endpoint."))
        var matcher = Topology.matcher.connectEndpoint

        @Option(help: Topology.intakeStatus.bindHelp("Status socket the probe asks."))
        var statusBind = Topology.intakeStatus.bindEndpoint

        @Option(help: "With transport security on: a file of servers' CURVE public keys let in besides the fleet's, one `<Z85 key> <name>` a line. Env: FERRY_INTAKE_ALLOW.")
        var allow = Env.string("FERRY_INTAKE_ALLOW", "")
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run request intake (the default).")
        @OptionGroup var options: Options

        func run() async throws {
            let logger = ServiceMain.logger("ferry.intake", level: options.common.level)
            let config = IntakeConfig(bind: options.bind, matcher: options.matcher, eventsIn: options.common.eventsIn,
                                      statusBind: options.statusBind,
                                      security: try options.common.transport(role: .intake, allowListFile: options.allow, logger: logger))
            try await ServiceMain.run([Intake.service(config, logger: logger)], logger: logger,
                                     metricsBind: options.common.metrics(for: .intake))
        }
    }

    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exit 0 if intake on this host is serving (a healthcheck).")
        @OptionGroup var options: Options
        func run() throws { try ProbeCommand.run(connectable(options.statusBind)) }
    }
}
