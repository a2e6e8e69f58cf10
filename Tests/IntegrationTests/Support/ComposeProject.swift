import FerryProtocol
import Foundation

/// compose/compose.yaml brought up by the machine's Docker engine as a project of its own
/// name, with its two host ports chosen free. Every docker command runs under `timeout`, so a
/// stuck engine fails the test instead of hanging it; `down()` removes what the project made.
final class ComposeProject: Sendable {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var file: String { root.appendingPathComponent("compose/compose.yaml").path }

    let name: String
    let originPort: UInt16
    let eventsPort: UInt16
    /// What compose interpolates into the file (`${ORIGIN_HOST_PORT}`, `${FERRY_UPLOAD_RATE}`, ...).
    let variables: [String: String]
    var network: String { "\(name)_default" }
    var originURL: String { "http://127.0.0.1:\(originPort)" }

    init(variables extra: [String: String] = [:]) {
        name = "ferrytest\(getpid())"
        originPort = Ports.free()
        eventsPort = Ports.free()
        variables = ["ORIGIN_HOST_PORT": "\(originPort)", "EVENTS_HOST_PORT": "\(eventsPort)"].merging(extra) { $1 }
    }

    /// Runs a command to completion (at most `timeout` seconds), its output read from files so
    /// a chatty standard error can't fill a pipe and stall it.
    static func run(_ command: [String], environment: [String: String] = [:], timeout: Int = 120) throws -> Stack.CommandResult {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("compose-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let out = scratch.appendingPathComponent("out"), err = scratch.appendingPathComponent("err")
        let child = try Spawned(["/usr/bin/timeout", "--kill-after=10", "\(timeout)"] + command,
                                environment: ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }.merging(environment) { $1 },
                                stdout: out.path, stderr: err.path)
        let status = child.wait()
        return Stack.CommandResult(status: status, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                                   stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    @discardableResult
    func docker(_ arguments: [String], timeout: Int = 120) throws -> Stack.CommandResult {
        try Self.run(["docker"] + arguments, environment: variables, timeout: timeout)
    }

    /// `docker compose` on this project; a failure throws with what compose said.
    @discardableResult
    func compose(_ arguments: [String], timeout: Int = 120) throws -> Stack.CommandResult {
        let result = try docker(["compose", "-f", Self.file, "-p", name] + arguments, timeout: timeout)
        guard result.status == 0 else {
            throw StackError("docker compose \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr.suffix(2000))")
        }
        return result
    }

    /// A command in a running replica (`docker compose exec`), with the service's environment.
    func exec(_ service: String, index: Int = 1, _ command: [String], timeout: Int = 60) throws -> Stack.CommandResult {
        try docker(["compose", "-f", Self.file, "-p", name, "exec", "-T", "--index", "\(index)", service] + command, timeout: timeout)
    }

    func container(_ service: String, _ index: Int) -> String { "\(name)-\(service)-\(index)" }

    /// Every profile of the file, so listing and removing see the services only a profile starts.
    static let everyProfile = ["--profile", "forwarding", "--profile", "operator"]

    /// One line of `docker compose ps -a` per container.
    struct Container: Decodable {
        var Name: String
        var Service: String
        var State: String
        var Health: String
        var ExitCode: Int
    }

    func containers() throws -> [Container] {
        try compose(Self.everyProfile + ["ps", "-a", "--format", "json"]).stdout.split(separator: "\n").map {
            try JSONDecoder().decode(Container.self, from: Data($0.utf8))
        }
    }

    /// The container's address on the project's network: what a relay there advertises.
    func address(of container: String) throws -> String {
        let result = try docker(["inspect", "--format", "{{(index .NetworkSettings.Networks \"\(network)\").IPAddress}}", container])
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The volumes the project's containers mount, named and anonymous, so a test can check
    /// that `down -v` removed every one.
    func volumes() throws -> Set<String> {
        try volumes(of: try compose(Self.everyProfile + ["ps", "-a", "-q"]).stdout.split(separator: "\n").map(String.init))
    }

    /// The volumes these containers mount, named and anonymous.
    func volumes(of containers: [String]) throws -> Set<String> {
        guard !containers.isEmpty else { return [] }
        let names = try docker(["inspect", "--format", "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}"] + containers).stdout
        return Set(names.split(whereSeparator: \.isWhitespace).map(String.init))
    }

    /// Content published from the host through the origin's published port, as an operator
    /// would: `mebibytes` of random bytes written to `directory` first.
    func publish(_ mebibytes: Int, _ name: String, in directory: URL, token: String) throws -> (ContentID, Data) {
        var generator = SystemRandomNumberGenerator()
        let bytes = Data((0..<(mebibytes << 17)).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64) { Array($0) } })
        let file = directory.appendingPathComponent(name)
        try bytes.write(to: file)
        let result = try Self.run([Stack.binaries.appendingPathComponent("ferry").path, "publish", "--quiet", "--all-devices",
                                   "--origin", originURL, file.path], environment: ["FERRY_OPERATOR_TOKEN": token])
        guard result.status == 0 else { throw StackError("ferry publish failed: \(result.stderr)") }
        return (try ContentID(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), bytes)
    }

    /// The broker's counters from what `ferry status --json` printed.
    static func brokerCounters(from result: Stack.CommandResult) throws -> [String: JSONValue] {
        let reports = result.stdout.split(separator: "\n").compactMap { try? JSONCoding.decoder.decode(StatusReport.self, from: Data($0.utf8)) }
        guard let broker = reports.first(where: { $0.service == "broker" }) else { throw StackError("no broker report: \(result.stderr)") }
        return broker.counters
    }

    /// The runtime image from this test run's binaries (`Scripts/image --debug`), built once
    /// for every engine test in the process.
    static func buildImage() throws {
        try image.get()
    }

    private static let image = Result<Void, Error> {
        let built = try run([root.appendingPathComponent("Scripts/image").path, "--debug", Stack.binaries.path], timeout: 900)
        guard built.status == 0 else { throw StackError("Scripts/image failed: \(built.stderr.suffix(3000))") }
    }

    /// What of this project is still on the engine: containers and networks by compose's
    /// project label, volumes by name.
    func leftovers(volumes: Set<String>) throws -> [String] {
        let label = "label=com.docker.compose.project=\(name)"
        let containers = try docker(["ps", "-a", "-q", "--filter", label]).stdout.split(separator: "\n").map { "container \($0)" }
        let networks = try docker(["network", "ls", "-q", "--filter", label]).stdout.split(separator: "\n").map { "network \($0)" }
        let present = Set(try docker(["volume", "ls", "-q"]).stdout.split(separator: "\n").map(String.init))
        return containers + networks + present.intersection(volumes).sorted().map { "volume \($0)" }
    }

    /// Removes every container, network and volume of the project, whatever state it is in.
    func down() {
        _ = try? docker(["compose", "-f", Self.file, "-p", name] + Self.everyProfile + ["down", "-v", "--remove-orphans", "-t", "5"], timeout: 120)
    }
}

/// What `ferry get --json` printed last: the download's result.
func getResult(_ result: Stack.CommandResult, _ who: String) throws -> GetResult {
    guard let line = result.stdout.split(separator: "\n").last,
          let decoded = try? JSONCoding.decoder.decode(GetResult.self, from: Data(line.utf8)) else {
        throw StackError("ferry get in \(who) printed no result (exit \(result.status)): \(result.stderr)")
    }
    return decoded
}

/// A subscriber on the host, outside every container, as an operator's tool would be: pyzmq
/// SUB on the event stream's published port, writing each message's frames as one line of base64.
final class HostSubscriber {
    private let child: Spawned
    private let log: URL

    init(port: UInt16) throws {
        log = FileManager.default.temporaryDirectory.appendingPathComponent("events-\(UUID().uuidString).b64")
        try Data().write(to: log)
        child = try Spawned(["/usr/bin/python3", "-c", """
            import base64, sys, zmq
            s = zmq.Context().socket(zmq.SUB)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(sys.argv[1])
            with open(sys.argv[2], "a") as out:
                while True:
                    out.write(" ".join(base64.b64encode(f).decode() for f in s.recv_multipart()) + "\\n")
                    out.flush()
            """, "tcp://127.0.0.1:\(port)", log.path], environment: ProcessInfo.processInfo.environment,
            stdout: "/dev/null", stderr: "/dev/null")
    }

    /// Every event read so far.
    var events: [FerryEvent] {
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let frames = line.split(separator: " ").compactMap { Data(base64Encoded: String($0)) }
            return try? FerryEvent.decode(frames: frames)
        }
    }

    @discardableResult
    func waitFor(_ what: String, timeout: TimeInterval = 30, _ predicate: (FerryEvent) -> Bool) throws -> FerryEvent {
        var found: FerryEvent?
        try waitUntil(what, timeout: timeout) {
            found = events.first(where: predicate)
            return found != nil
        }
        return found!
    }

    func stop() {
        child.kill(SIGKILL)
        _ = child.wait()
        try? FileManager.default.removeItem(at: log)
    }
}

/// A child process started with posix_spawn and reaped with a blocking waitpid. Foundation's
/// Process learns that a child exited from SIGCHLD, which the test process's threads block (and
/// pass on blocked to children): once, a compose test waited forever on a `timeout` that had
/// long exited, a zombie nobody reaped. The child starts with no signal blocked.
struct Spawned {
    let pid: pid_t

    init(_ argv: [String], environment: [String: String], stdout: String, stderr: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let arguments = argv.map { strdup($0) } + [nil]
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (arguments + variables).forEach { free($0) } }
        var pid: pid_t = 0
        let started = posix_spawn(&pid, argv[0], &actions, &attributes, arguments, variables)
        guard started == 0 else { throw StackError("cannot start \(argv[0]): \(String(cString: strerror(started)))") }
        self.pid = pid
    }

    /// Waits for the child to end: its exit status, or 128 + the signal that ended it.
    func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            if errno != EINTR { return -1 }
        }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    func kill(_ signal: Int32) { _ = Glibc.kill(pid, signal) }
}
