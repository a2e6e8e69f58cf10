import ArgumentParser
import FerryIntake
import FerryService

@main
struct IntakeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-intake",
        abstract: "Request intake: PULLs download requests from servers, validates them, PUSHes them to matching.")

    @OptionGroup var common: CommonOptions

    @Option(help: "PULL bind address servers push requests to. Env: FERRY_INTAKE_BIND.")
    var bind = Env.string("FERRY_INTAKE_BIND", DefaultEndpoint.intake)

    @Option(help: "The matcher's PULL endpoint. Env: FERRY_MATCHER_ENDPOINT.")
    var matcher = Env.string("FERRY_MATCHER_ENDPOINT", DefaultEndpoint.matcher)

    func run() async throws {
        let logger = ServiceMain.logger("ferry.intake", level: common.level)
        let config = IntakeConfig(bind: bind, matcher: matcher, eventsIn: common.eventsIn)
        try await ServiceMain.run([Intake.service(config, logger: logger)], logger: logger)
    }
}
