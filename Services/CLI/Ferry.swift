import ArgumentParser
import FerryService

@main
struct Ferry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Ferry's command line: get and publish content, watch the event stream, check the fleet.",
        discussion: """
            Exit codes: 0 success; 1 the operation failed (download failed, server refused); \
            3 a Ferry service or agent could not be reached or timed out; 64 bad usage.
            """,
        subcommands: [Get.self, Publish.self, Withdraw.self, Devices.self, Tokens.self, Keys.self, Events.self, Status.self, Fulfilments.self, Audit.self])
}

enum ExitStatus {
    static let failed = ExitCode(1)
    static let unreachable = ExitCode(3)
}
