import FerryContent
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
import ZeroMQ
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A whole Ferry deployment as local processes: the built executables, each on ports of its
/// own, data in a temporary directory, logs beside it. `stop()` ends every process.
final class Stack: @unchecked Sendable {
    static let binaries: URL = {
        if let given = ProcessInfo.processInfo.environment["FERRY_BIN"] { return URL(fileURLWithPath: given) }
        // The test bundle sits in the build products folder beside the executables.
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }()

    let directory: URL
    let eventsIn: String, eventsOut: String
    let intake: String, matcher: String, holdings: String, broker: String, brokerControl: String, reporter: String
    /// Status sockets of the services whose own sockets can't answer a probe.
    let status: [String: String]
    let originPort: UInt16
    var originURL: String { "http://127.0.0.1:\(originPort)" }
    private(set) var relays: [String] = []
    private(set) var processes: [String: Process] = [:]
    /// How each process was started, so a fault test can start it again as it was.
    private var launches: [String: (executable: String, arguments: [String], environment: [String: String])] = [:]
    /// Where each process serves Prometheus metrics.
    private(set) var metrics: [String: UInt16] = [:]
    let events: EventLog
    let context: Context
    /// The origin's manifest-signing key, as an operator would copy it into device configuration.
    private(set) var originPublicKey = ""
    /// The token the origin made in its data directory on first start, read once it answers.
    private(set) var operatorToken = ""
    /// With transport security: the fleet's keys (`ferry keys fleet`), and the operator's pair
    /// the test presents on secured sockets.
    let keysDirectory: String?
    private(set) var operatorKeys: CurveKeyPair?

    struct Agent {
        let name: String
        let control: String
        let process: Process
        let dataDirectory: URL
        var deviceId: String {
            (try? String(contentsOf: dataDirectory.appendingPathComponent("device.id"), encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        }
    }

    /// `heartbeatMilliseconds` is the broker's, which agents and relays adopt; fault tests
    /// shorten it so a lost party is noticed in about a second.
    /// `secure`: CurveZMQ on every socket, with keys made for this stack; `intakeAllowList`: a
    /// file of outside servers' keys intake lets in.
    init(relays relayCount: Int = 1, heartbeatMilliseconds: Int? = nil, secure: Bool = false, intakeAllowList: String? = nil,
         name: String = #function) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-it-\(name.prefix(40).filter { $0.isLetter })-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("logs"), withIntermediateDirectories: true)
        func endpoint() -> String { "tcp://127.0.0.1:\(Ports.free())" }
        eventsIn = endpoint(); eventsOut = endpoint()
        intake = endpoint(); matcher = endpoint(); holdings = endpoint()
        broker = endpoint(); brokerControl = endpoint(); reporter = endpoint()
        originPort = Ports.free()
        status = ["eventbus": endpoint(), "intake": endpoint(), "matcher": endpoint(), "reporter": endpoint()]
        context = try Context()
        events = EventLog(endpoint: eventsOut)
        keysDirectory = secure ? directory.appendingPathComponent("keys").path : nil
        if let keysDirectory {
            let made = try run("ferry", ["keys", "fleet", keysDirectory])
            guard made.status == 0 else { throw StackError("ferry keys fleet failed: \(made.stderr)") }
            operatorKeys = try fleetKeyPair("operator")
        }

        try start("eventbus", "ferry-eventbus", ["--publishers-bind", eventsIn, "--subscribers-bind", eventsOut, "--status-bind", status["eventbus"]!])
        try waitForEventLog()
        try start("reporter", "ferry-reporter", ["--bind", reporter, "--ledger", path("reporter/ledger.sqlite"), "--verify-wait-ms", "10000",
                                                 "--status-bind", status["reporter"]!])
        try start("broker", "ferry-broker", ["--bind", broker, "--control-bind", brokerControl, "--reporter", reporter, "--matcher", matcher]
                  + (heartbeatMilliseconds.map { ["--heartbeat-ms", String($0)] } ?? []))
        try start("matcher", "ferry-matcher", ["--bind", matcher, "--holdings-bind", holdings, "--broker", broker, "--status-bind", status["matcher"]!])
        try start("intake", "ferry-intake", ["--bind", intake, "--matcher", matcher, "--status-bind", status["intake"]!]
                  + (intakeAllowList.map { ["--allow", $0] } ?? []))
        // With keys the origin checks deliveries against the fleet's reporter-signing key; without, against the reporter's own.
        try start("origin", "ferry-origin", ["--port", String(originPort), "--data-dir", path("origin"), "--intake", intake, "--events-out", eventsOut]
                  + (secure ? [] : ["--reporter-key", path("reporter/reporter-signing.pub")]))
        for _ in 0..<relayCount { try addRelay() }
        try waitUntil("the origin to answer", timeout: 60) { try http("GET", "/health").status == 200 }
        operatorToken = try String(contentsOfFile: path("origin/operator.token"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let key = try JSONSerialization.jsonObject(with: try http("GET", "/v1/origin-key").body) as? [String: String]
        originPublicKey = key?["publicKey"] ?? ""
        try waitUntil("\(relayCount) relays to register", timeout: 30) { try relayCountAtBroker() >= relayCount }
    }

    /// A SUB misses what the bus forwards before its subscription arrives, so nothing starts
    /// until a ping published through the bus has come back to this stack's event log.
    private func waitForEventLog() throws {
        let ping = try context.socket(.pub)
        defer { ping.close() }
        try secureAsOperator(ping, server: "eventbus")
        try ping.connect(eventsIn)
        // With keys the bus lets the operator's key publish as `operator.*` only.
        let event = FerryEvent(topic: "test.ping", time: Timestamp.now(), publisher: "operator.test", seq: 1, requestId: nil, sessionId: nil, data: [:])
        try waitUntil("the event stream to reach the test", timeout: 30) {
            try ping.send(try event.frames, dontWait: true)
            Thread.sleep(forTimeInterval: 0.1)
            return !events.matching("test.ping").isEmpty
        }
    }

    func path(_ relative: String) -> String { directory.appendingPathComponent(relative).path }

    var commonArguments: [String] {
        ["--events-in", eventsIn, "--log-level", "info"] + (keysDirectory.map { ["--transport-keys", $0, "--key-registry", originURL] } ?? [])
    }

    enum KeyHalf: String { case `public`, secret }

    /// One of the fleet's keys, as `ferry keys fleet` wrote it.
    static func fleetKey(in directory: String, _ half: KeyHalf, _ role: String) throws -> [UInt8] {
        let text = try String(contentsOfFile: "\(directory)/\(half.rawValue)/\(role).key", encoding: .utf8)
        guard let key = Z85.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw StackError("\(role) key unreadable") }
        return key
    }

    func fleetKey(_ half: KeyHalf, _ role: String) throws -> [UInt8] {
        guard let keysDirectory else { throw StackError("this stack has no keys") }
        return try Stack.fleetKey(in: keysDirectory, half, role)
    }

    func fleetKeyPair(_ role: String) throws -> CurveKeyPair { try CurveKeyPair(secretKey: try fleetKey(.secret, role)) }

    /// Makes `socket` a CURVE client of the fleet service `server` as the operator; nothing
    /// without keys.
    func secureAsOperator(_ socket: Socket, server: String) throws {
        guard let operatorKeys else { return }
        try socket.makeCurveClient(operatorKeys, serverKey: try fleetKey(.public, server))
    }

    @discardableResult
    func start(_ name: String, _ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = Stack.binaries.appendingPathComponent(executable)
        let metricsPort = Ports.free()
        metrics[name] = metricsPort
        process.arguments = arguments + commonArguments + ["--metrics-bind", "127.0.0.1:\(metricsPort)"]
        // Only the flags configure a test's services, never the caller's FERRY_* variables.
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let logPath = path("logs/\(name).log")
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try log.seekToEnd()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        processes[name] = process
        launches[name] = (executable, arguments, environment)
        return process
    }

    /// Starts a stopped (or killed) process again with the arguments it had.
    @discardableResult
    func restart(_ name: String) throws -> Process {
        guard let launch = launches[name] else { throw StackError("\(name) was never started") }
        if let old = processes[name], old.isRunning { throw StackError("\(name) is still running") }
        return try start(name, launch.executable, launch.arguments, environment: launch.environment)
    }

    func restartAgent(_ agent: Agent) throws -> Agent {
        let process = try restart("agent-\(agent.name)")
        let restarted = Agent(name: agent.name, control: agent.control, process: process, dataDirectory: agent.dataDirectory)
        try waitUntil("agent \(agent.name) to answer again", timeout: 30) { (try? status(agent.control)) != nil }
        return restarted
    }

    /// SIGSTOP: the process stops without a word and its connections stay open, quiet: a device
    /// that lost its power or its network, as its peers see it. `kill` ends it.
    func freeze(_ name: String) {
        guard let process = processes[name] else { return }
        Glibc.kill(process.processIdentifier, SIGSTOP)
    }

    /// SIGKILL: the process gets no chance to say goodbye or save anything.
    func kill(_ name: String) {
        guard let process = processes[name] else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Adds a relay on a port of its own, with `extra` flags (`--drain-ms`); returns its endpoint.
    @discardableResult
    func addRelay(extra: [String] = []) throws -> String {
        let endpoint = "tcp://127.0.0.1:\(Ports.free())"
        let name = "relay-\(relays.count + 1)"
        try start(name, "ferry-relay", ["--bind", endpoint, "--broker", brokerControl, "--data-dir", path(name),
                                         "--join-token-file", path("origin/join-tokens/relay.token")] + extra)
        relays.append(endpoint)
        return endpoint
    }

    func startAgent(_ name: String, extra: [String] = []) throws -> Agent {
        let control = "tcp://127.0.0.1:\(Ports.free())"
        let data = directory.appendingPathComponent("agent-\(name)")
        let process = try start("agent-\(name)", "ferry-agent", [
            "--data-dir", data.path, "--control", control, "--origin", originURL, "--broker", brokerControl,
            "--holdings", holdings, "--reporter", reporter, "--announce-ms", "500", "--origin-public-key", originPublicKey,
            "--join-token-file", path("origin/join-tokens/device.token"), "--output-dir", directory.path,
        ] + extra)
        let agent = Agent(name: name, control: control, process: process, dataDirectory: data)
        try waitUntil("agent \(name) to answer", timeout: 30) { (try? status(control)) != nil }
        try events.waitFor("device \(name) to join the broker") { $0.topic == "device.joined" && $0.data["deviceId"]?.stringValue == agent.deviceId }
        try events.waitFor("device \(name) to enrol at the origin") { $0.topic == "device.enrolled" && $0.data["deviceId"]?.stringValue == agent.deviceId }
        return agent
    }

    // MARK: driving it from outside

    struct CommandResult {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs the `ferry` CLI like the operator would, with the origin's operator token.
    func ferry(_ arguments: [String]) throws -> CommandResult {
        try run("ferry", arguments, environment: ["FERRY_OPERATOR_TOKEN": operatorToken])
    }


    /// Runs one of the built executables to completion, with none of the caller's FERRY_* variables.
    func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
        let process = Process()
        process.executableURL = Stack.binaries.appendingPathComponent(executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return CommandResult(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                             stderr: String(decoding: stderr, as: UTF8.self))
    }

    func publish(_ file: URL) throws -> ContentID {
        let result = try ferry(["publish", "--quiet", "--all-devices", "--origin", originURL, file.path])
        guard result.status == 0 else { throw StackError("publish failed: \(result.stderr)") }
        return try ContentID(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// `ferry get --json` through an agent; returns the agent's result.
    func get(_ content: ContentID, via agent: Agent, output: URL? = nil) throws -> GetResult {
        var arguments = ["get", content.hex, "--agent", agent.control, "--json", "--timeout", "300"]
        if let output { arguments += ["--output", output.path] }
        let result = try ferry(arguments)
        guard let line = result.stdout.split(separator: "\n").last,
              let decoded = try? JSONCoding.decoder.decode(GetResult.self, from: Data(line.utf8)) else {
            throw StackError("ferry get printed no result (exit \(result.status)): \(result.stderr)")
        }
        return decoded
    }

    func status(_ endpoint: String) throws -> StatusReport {
        let socket = try context.socket(.dealer)
        defer { socket.close() }
        // The broker's control socket is a CURVE server with keys; agents' control sockets never are.
        if endpoint == brokerControl { try secureAsOperator(socket, server: "broker") }
        // A relay's socket is a CURVE server with its own key, kept in its data directory.
        if let operatorKeys, let index = relays.firstIndex(of: endpoint) {
            let relayKeys = try DeviceKeys.loadOrCreate(directory: URL(fileURLWithPath: path("relay-\(index + 1)")), fileName: "relay.keys")
            try socket.makeCurveClient(operatorKeys, serverKey: Array(Data(base64Encoded: relayKeys.agreementPublicKey) ?? Data()))
        }
        try socket.connect(endpoint)
        try socket.send(try StatusQuery().frames())
        var poller = Poller()
        poller.add(socket)
        try poller.poll(timeoutMilliseconds: 2000)
        guard let frames = try socket.receive(dontWait: true) else { throw StackError("no status from \(endpoint)") }
        return try StatusReport.decode(frames: frames.map(\.data))
    }

    func relayCountAtBroker() throws -> Int {
        guard case .array(let relays)? = try status(brokerControl).counters["relays"] else { return 0 }
        return relays.count
    }

    func counter(_ report: StatusReport, _ name: String) -> Double { report.counters[name]?.numberValue ?? 0 }

    typealias HTTPResult = HTTPResponse

    /// What the CLI and the agents use, so a test meets the origin as they do.
    func http(_ method: String, _ path: String, body: Data? = nil, headers: [String: String]? = nil) throws -> HTTPResult {
        var request = URLRequest(url: URL(string: originURL + path)!, timeoutInterval: 10)
        request.httpMethod = method
        // As the operator: the origin asks devices to sign their requests, and the operator's token stands in.
        for (name, value) in headers ?? (operatorToken.isEmpty ? [:] : ["Authorization": "Bearer \(operatorToken)"]) {
            request.setValue(value, forHTTPHeaderField: name)
        }
        request.httpBody = body
        if body != nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        return try BlockingHTTP.send(request)
    }

    /// The status page's live view as its feed (`/v1/live`, server-sent events) gives it first,
    /// read as the operator with curl, which ends the never-ending stream after a second.
    func liveView() throws -> [String: Any] {
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-sN", "--max-time", "1", "-H", "Authorization: Bearer \(operatorToken)", originURL + "/v1/live"]
        let output = Pipe()
        curl.standardOutput = output
        try curl.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        curl.waitUntilExit()
        guard let frame = text.split(separator: "\n").first(where: { $0.hasPrefix("data: ") }),
              let view = try JSONSerialization.jsonObject(with: Data(frame.dropFirst(6).utf8)) as? [String: Any] else {
            throw StackError("no live view from /v1/live: \(text.prefix(200))")
        }
        return view
    }

    /// One process's Prometheus text, as a scraper would fetch it.
    func scrape(_ name: String) throws -> String {
        let url = URL(string: "http://127.0.0.1:\(metrics[name] ?? 0)/metrics")!
        var request = URLRequest(url: url, timeoutInterval: 5)
        request.httpMethod = "GET"
        final class Box: @unchecked Sendable { var text = "" }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, _, _ in
            box.text = String(decoding: data ?? Data(), as: UTF8.self)
            done.signal()
        }.resume()
        done.wait()
        return box.text
    }

    /// The value of one sample line, e.g. `ferry_relay_payload_bytes_total` or
    /// `ferry_fulfilments_total{verification="matched"}`.
    static func sample(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    func fulfilments() throws -> [Fulfilment] {
        try JSONCoding.decoder.decode([Fulfilment].self, from: http("GET", "/v1/fulfilments").body)
    }

    /// A PUSH socket straight to intake, as any server outside Ferry would use.
    func pushToIntake(_ frames: [Data]) throws {
        let socket = try context.socket(.push)
        defer { socket.close(lingerMilliseconds: 2000) }
        try socket.connect(intake)
        try socket.send(frames)
    }

    // MARK: processes

    /// Resident and peak resident memory of a process, in KiB, from /proc.
    func memory(_ name: String) throws -> (rss: Int, peak: Int) {
        // A figure that couldn't be read is an error, never a zero that passes every bound.
        guard let pid = processes[name]?.processIdentifier, processes[name]?.isRunning == true else { throw StackError("\(name) is not running") }
        let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func field(_ key: String) throws -> Int {
            guard let value = text.split(separator: "\n").first(where: { $0.hasPrefix(key) })
                .flatMap({ Int($0.split(separator: " ").dropFirst().first(where: { !$0.isEmpty }) ?? "") }), value > 0 else {
                throw StackError("no \(key) in /proc/\(pid)/status of \(name)")
            }
            return value
        }
        return (try field("VmRSS:"), try field("VmHWM:"))
    }

    func signal(_ name: String, _ signal: Int32) {
        if let pid = processes[name]?.processIdentifier { Glibc.kill(pid, signal) }
    }

    func stop() {
        for process in processes.values where process.isRunning { process.terminate() }
        let deadline = Date().addingTimeInterval(10)
        for process in processes.values {
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        }
        events.stop()
        if ProcessInfo.processInfo.environment["FERRY_KEEP_TEST_DATA"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// A file of incompressible bytes: one random mebibyte, stamped with its index each time
    /// it is repeated, so every chunk differs (and writing a gibibyte stays fast in a debug build).
    func randomFile(_ name: String, mebibytes: Int) throws -> URL {
        let url = directory.appendingPathComponent(name)
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        var block = [UInt8](repeating: 0, count: 1 << 20)
        var generator = SystemRandomNumberGenerator()
        block.withUnsafeMutableBytes { raw in
            for i in raw.bindMemory(to: UInt64.self).indices { raw.storeBytes(of: generator.next(), toByteOffset: i * 8, as: UInt64.self) }
        }
        let salt = generator.next()
        for index in 0..<mebibytes {
            block.withUnsafeMutableBytes { raw in
                for word in 0..<16 { raw.storeBytes(of: salt &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(word), toByteOffset: word * 4096, as: UInt64.self) }
            }
            try handle.write(contentsOf: block)
        }
        try handle.close()
        return url
    }
}
