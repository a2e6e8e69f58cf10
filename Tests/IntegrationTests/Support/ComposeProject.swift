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
        for file in [out, err] { try Data().write(to: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["--kill-after=10", "\(timeout)"] + command
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }.merging(environment) { $1 }
        process.currentDirectoryURL = root
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        process.waitUntilExit()
        return Stack.CommandResult(status: process.terminationStatus,
                                   stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
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
        let ids = try compose(Self.everyProfile + ["ps", "-a", "-q"]).stdout.split(separator: "\n").map(String.init)
        guard !ids.isEmpty else { return [] }
        let names = try docker(["inspect", "--format", "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}"] + ids).stdout
        return Set(names.split(whereSeparator: \.isWhitespace).map(String.init))
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

/// A subscriber on the host, outside every container, as an operator's tool would be: pyzmq
/// SUB on the event stream's published port, writing each message's frames as one line of base64.
final class HostSubscriber {
    private let process = Process()
    private let log: URL

    init(port: UInt16) throws {
        log = FileManager.default.temporaryDirectory.appendingPathComponent("events-\(UUID().uuidString).b64")
        try Data().write(to: log)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", """
            import base64, sys, zmq
            s = zmq.Context().socket(zmq.SUB)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(sys.argv[1])
            with open(sys.argv[2], "a") as out:
                while True:
                    out.write(" ".join(base64.b64encode(f).decode() for f in s.recv_multipart()) + "\\n")
                    out.flush()
            """, "tcp://127.0.0.1:\(port)", log.path]
        process.standardError = FileHandle.standardError
        try process.run()
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

    /// SIGKILL: the test process blocks SIGTERM in the threads it starts children from, and a
    /// child inherits that mask.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: log)
    }
}
