import ArgumentParser
import FerryReporter
import FerryService

@main
struct ReporterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-reporter",
        abstract: "Completion reporter: checks completions, records them in the ledger and delivers them to the server.")

    @OptionGroup var common: CommonOptions

    @Option(help: "PULL bind address agents push completions and the broker pushes records to. Env: FERRY_REPORTER_BIND.")
    var bind = Env.string("FERRY_REPORTER_BIND", DefaultEndpoint.reporter)

    @Option(help: "SQLite ledger file. Env: FERRY_LEDGER_PATH.")
    var ledger = Env.string("FERRY_LEDGER_PATH", "./run/reporter/ledger.sqlite")

    @Option(help: "Milliseconds a completion waits for the broker's closing record. Env: FERRY_VERIFY_WAIT_MS.")
    var verifyWaitMs = Env.int("FERRY_VERIFY_WAIT_MS", 15_000)

    func run() async throws {
        let logger = ServiceMain.logger("ferry.reporter", level: common.level)
        let config = ReporterConfig(bind: bind, eventsIn: common.eventsIn, ledgerPath: ledger, verifyWaitMilliseconds: verifyWaitMs)
        try await ServiceMain.run(try Reporter.services(config, logger: logger), logger: logger)
    }
}
