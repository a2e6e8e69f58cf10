import FerryProtocol
import FerryService
import Foundation
import Testing

/// compose/compose.yaml as users get it, run by a real Docker engine (Scripts/docker-engine
/// starts one when none runs) on the image Scripts/image builds from this test run's binaries.
@Suite(.serialized) struct ComposeFile {
    /// Up with three relays and two devices; a device gets content from the origin and the other
    /// gets it from that device through a relay; the event stream, the status page and a relay's
    /// metrics answer where an operator looks for them; a fourth relay added while running takes
    /// the next session, and stopping it mid-session drains it; two devices that forward each
    /// send through their own relay; `down -v` leaves nothing behind.
    @Test func composeRunsTheFleetAndDelivers() throws {
        try #require(getuid() == 0, "the compose test runs a Docker engine: it must run as root (CI does)")
        try ComposeProject.buildImage()

        // Every device caps its upload, so the session the fourth relay carries is still
        // running when that relay is stopped.
        let project = ComposeProject(variables: ["FERRY_UPLOAD_RATE": "2M"])
        defer { project.down() }
        let events = try HostSubscriber(port: project.eventsPort)
        defer { events.stop() }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("compose-test-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }

        try project.compose(["up", "-d", "--scale", "relay=3", "--scale", "agent=2"], timeout: 300)
        try waitUntil("every service healthy", timeout: 120) {
            try project.containers().allSatisfy { $0.Service == "keys" ? $0.State == "exited" && $0.ExitCode == 0 : $0.Health == "healthy" }
        }
        let running = try project.containers()
        #expect(running.filter { $0.Service == "relay" }.count == 3 && running.filter { $0.Service == "agent" }.count == 2)
        try waitUntil("the broker to know 3 relays and 2 devices") {
            let counters = try brokerCounters(project)
            return counters["relays"].map(relayList)?.count == 3 && counters["agents"]?.numberValue == 2
        }
        // Secrets where they belong: each service sees only its own secret keys, relays and
        // devices none, and the reporter none of the origin's data.
        for (service, role) in [("origin", FleetRole.origin), ("intake", .intake), ("matcher", .matcher), ("broker", .broker),
                                ("reporter", .reporter), ("eventbus", .eventbus)] {
            let listed = try project.exec(service, ["ls", "/keys/secret"])
            #expect(listed.stdout.split(separator: "\n").map(String.init).sorted() == role.secretFiles.sorted(), "\(service): \(listed.stdout)")
        }
        for service in ["agent", "relay"] {
            #expect(try project.exec(service, ["ls", "-A", "/keys"]).stdout == "public\n")
            let stolen = try project.exec(service, ["cat", "/keys/secret/broker.key"])
            #expect(stolen.status != 0 && stolen.stdout.isEmpty)
        }
        #expect(try project.exec("reporter", ["ls", "-A", "/data"]).stdout == "reporter\n")
        #expect(try project.exec("reporter", ["cat", "/data/origin/operator.token"]).status != 0)
        #expect(try project.exec("origin", ["ls", "-A", "/data"]).stdout == "origin\n")
        // Each kind of party can read its own standing join token, not the other's.
        #expect(try project.exec("agent", ["ls", "-A", "/enrolment/devices", "/enrolment/relays"]).stdout
                == "/enrolment/devices:\ndevice.token\n\n/enrolment/relays:\n")
        #expect(try project.exec("relay", ["ls", "-A", "/enrolment/devices", "/enrolment/relays"]).stdout
                == "/enrolment/devices:\n\n/enrolment/relays:\nrelay.token\n")

        // Each relay advertises its own container address, which devices in other containers dial.
        let advertised = Set(try relayList(brokerCounters(project)["relays"]!).compactMap { $0["endpoint"]?.stringValue })
        let addresses = Set(try (1...3).map { "tcp://\(try project.address(of: project.container("relay", $0))):7200" })
        #expect(advertised == addresses)

        // Published from the host through the origin's published port, as an operator would.
        let token = try project.exec("origin", ["cat", "/data/origin/operator.token"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(token.count > 20, "no operator token in the origin's volume")
        func publish(_ mebibytes: Int, _ name: String) throws -> (ContentID, Data) {
            try project.publish(mebibytes, name, in: scratch, token: token)
        }
        let (first, firstBytes) = try publish(4, "first.bin")
        let fromOrigin = try get(first, agent: 1, as: "first.bin", in: project)
        #expect(fromOrigin.ok && bytesBy(fromOrigin, "origin") == firstBytes.count)
        #expect(try copied(from: 1, "first.bin", in: project, to: scratch) == firstBytes)
        let agentOne = try deviceId(agent: 1, in: project)
        try events.waitFor("agent 1 to announce the content") { announces($0, agentOne, first) }
        let fromPeer = try get(first, agent: 2, as: "first.bin", in: project)
        #expect(fromPeer.ok && bytesBy(fromPeer, "peer") == firstBytes.count)
        #expect(Set(fromPeer.sources.compactMap(\.device?.rawValue)) == [agentOne])
        #expect(try copied(from: 2, "first.bin", in: project, to: scratch) == firstBytes)

        // The pyzmq subscriber on the host read both downloads and the fulfilments.
        for result in [fromOrigin, fromPeer] {
            let request = try #require(result.requestId?.rawValue)
            try events.waitFor("transfer.completed for \(request)") { $0.topic == "transfer.completed" && $0.requestId == request }
            try events.waitFor("fulfilment.recorded for \(request)") { $0.topic == "fulfilment.recorded" && $0.requestId == request }
        }
        #expect(events.events.contains { $0.topic == "session.brokered" && $0.requestId == fromPeer.requestId?.rawValue })

        // The status page from the host, with the operator's credentials; a relay's /metrics from
        // a container on the compose network (metrics ports are not published).
        let page = try ComposeProject.run(["curl", "-s", "-u", "any:\(token)", "-w", "\n%{http_code}", "\(project.originURL)/status"])
        #expect(page.stdout.hasSuffix("\n200") && page.stdout.contains("<html"))
        let refused = try ComposeProject.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "\(project.originURL)/status"])
        #expect(refused.stdout == "401")
        let live = try ComposeProject.run(["curl", "-s", "-N", "-m", "3", "-u", "any:\(token)", "\(project.originURL)/v1/live"])
        // The origin's page follows the event stream inside compose: it lists the peer download.
        let peerRequest = try #require(fromPeer.requestId?.rawValue)
        #expect(live.stdout.hasPrefix("data: {") && live.stdout.contains(peerRequest))
        let metrics = try project.docker(["run", "--rm", "--network", project.network, "ferry:latest", "bash", "-c",
                                          "exec 3<>/dev/tcp/relay/9200; printf 'GET /metrics HTTP/1.0\\r\\nHost: relay\\r\\n\\r\\n' >&3; timeout 3 cat <&3"])
        #expect(metrics.stdout.hasPrefix("HTTP/1.1 200") && metrics.stdout.contains("ferry_relay_payload_bytes_total"))

        // A fourth relay while running; with the first three stopped (each drains: no session
        // is on them), the next session can only go through it.
        try project.compose(["up", "-d", "--no-recreate", "--scale", "relay=4", "--scale", "agent=2"], timeout: 180)
        let fourth = "tcp://\(try project.address(of: project.container("relay", 4))):7200"
        try waitUntil("the broker to know the fourth relay") {
            try relayList(brokerCounters(project)["relays"]!).contains { $0["endpoint"]?.stringValue == fourth }
        }
        try project.docker(["stop", project.container("relay", 1), project.container("relay", 2), project.container("relay", 3)], timeout: 90)
        try waitUntil("three relays draining") { events.events.filter { $0.topic == "relay.draining" }.count >= 3 }

        let (second, secondBytes) = try publish(8, "second.bin")
        #expect(try get(second, agent: 2, as: "second.bin", in: project).ok)
        let agentTwo = try deviceId(agent: 2, in: project)
        try events.waitFor("agent 2 to announce the second content") { announces($0, agentTwo, second) }
        let drained = Background { try get(second, agent: 1, as: "second.bin", in: project) }
        let brokered = try events.waitFor("a session for the second content", timeout: 60) {
            $0.topic == "session.brokered" && $0.data["receiver"]?.stringValue == agentOne
        }
        #expect(brokered.data["relayEndpoint"]?.stringValue == fourth)
        try events.waitFor("the session's data flowing") { $0.topic == "transfer.progress" && $0.requestId == brokered.requestId }
        try project.docker(["stop", project.container("relay", 4)], timeout: 60)
        let draining = try events.waitFor("the fourth relay draining") {
            $0.topic == "relay.draining" && ($0.data["sessions"]?.numberValue ?? 0) >= 1
        }
        #expect(draining.data["sessions"]?.numberValue == 1)
        let exit = try project.docker(["inspect", "--format", "{{.State.ExitCode}}", project.container("relay", 4)])
        #expect(exit.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "the relay was killed rather than drained")
        let last = try drained.wait()
        #expect(last.ok && last.sources.reduce(0) { $0 + $1.bytes } == UInt64(secondBytes.count))
        #expect(try copied(from: 1, "second.bin", in: project, to: scratch) == secondBytes)

        // Devices that forward (profile `forwarding`), two replicas: each gets content from the
        // origin, and a device asking next gets it from that one through its own relay, on its
        // own container address, which no other sender may use; the reporter records those
        // fulfilments `unverified`, since the relay's count is the sender's own word.
        try project.compose(["--profile", "forwarding", "up", "-d", "--no-deps", "--scale", "forwarder=2", "forwarder"], timeout: 180)
        try waitUntil("both forwarding devices healthy", timeout: 90) {
            try project.containers().filter { $0.Service == "forwarder" }.map(\.Health) == ["healthy", "healthy"]
        }
        for (index, receiver) in [(1, 2), (2, 1)] {
            let forwarder = try project.exec("forwarder", index: index, ["cat", "/var/lib/ferry/agent/device.id"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try events.waitFor("forwarding device \(index)'s relay to join") {
                $0.topic == "relay.joined" && $0.data["forwardsFor"]?.stringValue == forwarder
            }
            let name = "forwarded-\(index).bin"
            let (content, bytes) = try publish(2, name)
            let seeded = try project.exec("forwarder", index: index, ["ferry", "get", content.hex, "--output", "/var/lib/ferry/downloads/\(name)",
                                                                     "--json"], timeout: 150)
            #expect(seeded.status == 0)
            try events.waitFor("forwarding device \(index) to announce its content") { announces($0, forwarder, content) }
            let forwarded = try get(content, agent: receiver, as: name, in: project)
            #expect(forwarded.ok && forwarded.sources.compactMap(\.device?.rawValue) == [forwarder])
            #expect(try copied(from: receiver, name, in: project, to: scratch) == bytes)
            let ownRelay = "tcp://\(try project.address(of: project.container("forwarder", index))):7200"
            let forwardedRequest = try #require(forwarded.requestId?.rawValue)
            let path = try events.waitFor("the session forwarded by device \(index)") {
                $0.topic == "session.brokered" && $0.requestId == forwardedRequest
            }
            #expect(path.data["relayEndpoint"]?.stringValue == ownRelay)
            let recorded = try events.waitFor("the fulfilment forwarded by device \(index)") {
                $0.topic == "fulfilment.recorded" && $0.requestId == forwardedRequest
            }
            #expect(recorded.data["verification"]?.stringValue == "unverified")
        }

        let volumes = try project.volumes()
        #expect(volumes.count == 13 + 4 + 2 + 2)   // the 13 named ones, one anonymous per relay, agent and forwarder
        try project.compose(ComposeProject.everyProfile + ["down", "-v", "-t", "10"], timeout: 120)
        #expect(try project.leftovers(volumes: volumes) == [])
    }

    /// The same services as a Docker Swarm stack (Scripts/stack-file) on a single-node swarm:
    /// every task healthy, relays scaled with `docker service scale` and known to the broker,
    /// a download from the origin and one from a peer through a relay, `docker stack rm` and the
    /// stack's volumes removed leaving nothing.
    @Test func theStackRunsOnASwarm() throws {
        try #require(getuid() == 0, "the swarm test runs a Docker engine: it must run as root (CI does)")
        try ComposeProject.buildImage()
        let project = ComposeProject()
        let stack = "\(project.name)s"
        func docker(_ arguments: [String], timeout: Int = 120) throws -> Stack.CommandResult { try project.docker(arguments, timeout: timeout) }
        // A swarm this test made is left again, so the engine is as it was found.
        let wasSwarm = try docker(["info", "--format", "{{.Swarm.LocalNodeState}}"]).stdout.hasPrefix("active")
        if !wasSwarm { try #require(try docker(["swarm", "init", "--advertise-addr", "127.0.0.1"]).status == 0) }
        defer {
            if !wasSwarm {
                _ = try? docker(["swarm", "leave", "--force"])
                _ = try? docker(["network", "rm", "docker_gwbridge"])
            }
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("swarm-test-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }

        let file = scratch.appendingPathComponent("stack.json")
        let generated = try ComposeProject.run([ComposeProject.root.appendingPathComponent("Scripts/stack-file").path], environment: project.variables)
        try #require(generated.status == 0, "Scripts/stack-file failed: \(generated.stderr)")
        try Data(generated.stdout.utf8).write(to: file)
        let namespace = "label=com.docker.stack.namespace=\(stack)"
        var volumes: Set<String> = []
        defer {
            _ = try? docker(["stack", "rm", stack])
            try? waitUntil("the stack's containers gone", timeout: 60) { try docker(["ps", "-a", "-q", "--filter", namespace]).stdout.isEmpty }
            let named = (try? docker(["volume", "ls", "-q", "--filter", namespace]).stdout.split(separator: "\n").map(String.init)) ?? []
            _ = try? docker(["volume", "rm"] + named + volumes.sorted())
        }
        try #require(try docker(["stack", "deploy", "-c", file.path, stack]).status == 0)
        let healthy = { (want: [String: Int]) throws -> Bool in
            let lines = try docker(["ps", "--filter", namespace, "--format", "{{.Label \"com.docker.swarm.service.name\"}} {{.Status}}"]).stdout
            var count: [String: Int] = [:]
            for line in lines.split(separator: "\n") where line.hasSuffix("(healthy)") { count[String(line.split(separator: " ")[0]), default: 0] += 1 }
            return want.allSatisfy { count["\(stack)_\($0.key)"] == $0.value }
        }
        let core = ["eventbus": 1, "reporter": 1, "broker": 1, "matcher": 1, "intake": 1, "origin": 1]
        try waitUntil("every task healthy", timeout: 180) { try healthy(core.merging(["relay": 1, "agent": 1, "forwarder": 1]) { $1 }) }
        try #require(try docker(["service", "scale", "-d", "\(stack)_relay=3", "\(stack)_agent=2"]).status == 0)
        try waitUntil("3 relays and 2 devices healthy", timeout: 120) { try healthy(core.merging(["relay": 3, "agent": 2, "forwarder": 1]) { $1 }) }

        // The operator's console as a one-off container on the stack's network, with the
        // operator's share of the keys.
        func counters() throws -> [String: JSONValue] {
            try ComposeProject.brokerCounters(from: try docker([
                "run", "--rm", "--network", "\(stack)_default",
                "--mount", "type=volume,src=\(stack)_ferry-keys-public,dst=/keys/public,readonly",
                "--mount", "type=volume,src=\(stack)_ferry-secret-operator,dst=/keys/secret,readonly",
                "-e", "FERRY_TRANSPORT_KEYS=/keys", "-e", "FERRY_BROKER_CONTROL_ENDPOINT=tcp://broker:7121",
                "ferry:latest", "ferry", "status", "--json"]))
        }
        // The forwarding device's relay is a relay too, known as that device's own.
        var relays: [JSONValue] = []
        try waitUntil("the broker to know 3 relays, the forwarding device's, and 3 devices", timeout: 60) {
            let counters = try counters()
            relays = counters["relays"].map(relayList) ?? []
            return relays.count == 4 && counters["agents"]?.numberValue == 3
        }
        let forwarder = try docker(["ps", "-q", "--filter", "label=com.docker.swarm.service.name=\(stack)_forwarder"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let forwarderId = try docker(["exec", forwarder, "cat", "/var/lib/ferry/agent/device.id"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(relays.compactMap { $0["forwardsFor"]?.stringValue } == [forwarderId], "\(relays)")

        let agents = try docker(["ps", "-q", "--filter", namespace, "--filter", "label=com.docker.swarm.service.name=\(stack)_agent"])
            .stdout.split(separator: "\n").map(String.init)
        try #require(agents.count == 2)
        let origin = try docker(["ps", "-q", "--filter", "label=com.docker.swarm.service.name=\(stack)_origin"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let token = try docker(["exec", origin, "cat", "/data/origin/operator.token"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let (id, bytes) = try project.publish(4, "content.bin", in: scratch, token: token)
        func get(_ container: String) throws -> GetResult {
            let decoded = try getResult(try docker(["exec", container, "ferry", "get", id.hex, "--output", "/var/lib/ferry/downloads/copy.bin",
                                                    "--json", "--timeout", "120"], timeout: 150), container)
            let copy = scratch.appendingPathComponent("copy-\(container).bin")
            try #require(try docker(["cp", "\(container):/var/lib/ferry/downloads/copy.bin", copy.path]).status == 0)
            #expect(try Data(contentsOf: copy) == bytes)
            return decoded
        }
        // The forwarding device gets it from the origin, then sends it on through its own relay.
        let first = try get(forwarder)
        #expect(first.ok && bytesBy(first, "origin") == bytes.count)
        let holder = forwarderId
        var second = first
        // The holder's announcement reaches the matcher within its interval: until then the
        // origin serves, so ask again until a peer does.
        try waitUntil("a download from the peer", timeout: 60) {
            second = try get(agents[1])
            return second.sources.contains { $0.kind == .peer }
        }
        #expect(second.ok && bytesBy(second, "peer") == bytes.count && second.sources.compactMap(\.device?.rawValue) == [holder])

        volumes = try project.volumes(of: try docker(["ps", "-a", "-q", "--filter", namespace]).stdout.split(separator: "\n").map(String.init))
        // The engine may refuse a removal while the stack's tasks are still stopping (it has
        // done so in CI once in a dozen runs); a stack already gone answers "Nothing found" and 0,
        // so asking again is safe, and what is checked below is that nothing is left.
        var removal = try docker(["stack", "rm", stack])
        try waitUntil("docker stack rm to succeed (first answer: \(removal.stderr))", timeout: 60) {
            if removal.status == 0 { return true }
            Thread.sleep(forTimeInterval: 2)
            removal = try docker(["stack", "rm", stack])
            return removal.status == 0
        }
        try waitUntil("the stack's containers gone", timeout: 60) { try docker(["ps", "-a", "-q", "--filter", namespace]).stdout.isEmpty }
        try waitUntil("the stack's network gone", timeout: 30) { try docker(["network", "ls", "-q", "--filter", namespace]).stdout.isEmpty }
        let named = try docker(["volume", "ls", "-q", "--filter", namespace]).stdout.split(separator: "\n").map(String.init)
        #expect(named.count == 13)
        #expect(try docker(["volume", "rm"] + named).status == 0)
        // Swarm removes a task's anonymous volumes with its container; any it left go too.
        let left = volumes.subtracting(named).intersection(try docker(["volume", "ls", "-q"]).stdout.split(separator: "\n").map(String.init))
        if !left.isEmpty { #expect(try docker(["volume", "rm"] + left.sorted()).status == 0) }
        let present = Set(try docker(["volume", "ls", "-q"]).stdout.split(separator: "\n").map(String.init))
        #expect(present.isDisjoint(with: volumes.union(named)))
        #expect(try docker(["service", "ls", "-q", "--filter", namespace]).stdout.isEmpty)
    }

    /// The broker's report, read as an operator does: `ferry status` in the console container,
    /// the one holding the operator's key.
    private func brokerCounters(_ project: ComposeProject) throws -> [String: JSONValue] {
        try ComposeProject.brokerCounters(from: try project.compose(["run", "--rm", "-T", "console", "ferry", "status", "--json"]))
    }

    private func announces(_ event: FerryEvent, _ device: String, _ content: ContentID) -> Bool {
        event.topic == "holdings.updated" && event.data["deviceId"]?.stringValue == device
            && (event.data["contents"].map { "\($0)" }?.contains(content.hex) ?? false)
    }

    private func relayList(_ value: JSONValue) -> [JSONValue] {
        if case .array(let relays) = value { relays } else { [] }
    }

    private func deviceId(agent index: Int, in project: ComposeProject) throws -> String {
        try project.exec("agent", index: index, ["cat", "/var/lib/ferry/agent/device.id"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func bytesBy(_ result: GetResult, _ kind: String) -> Int {
        Int(result.sources.filter { $0.kind.rawValue == kind }.reduce(0) { $0 + $1.bytes })
    }

    /// The bytes a device wrote, copied out of its container.
    private func copied(from agent: Int, _ name: String, in project: ComposeProject, to scratch: URL) throws -> Data {
        let target = scratch.appendingPathComponent("agent-\(agent)-\(name)")
        try project.compose(["cp", "--index", "\(agent)", "agent:/var/lib/ferry/downloads/\(name)", target.path])
        return try Data(contentsOf: target)
    }
}

/// `ferry get` in a device's container, as a user there would run it.
func get(_ content: ContentID, agent: Int, as name: String, in project: ComposeProject) throws -> GetResult {
    try getResult(try project.exec("agent", index: agent, ["ferry", "get", content.hex, "--output", "/var/lib/ferry/downloads/\(name)",
                                                           "--json", "--timeout", "120"], timeout: 150), "agent \(agent)")
}

/// Work on a thread of its own, waited for later: a download the test interrupts meanwhile.
final class Background<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, Error>?

    init(_ work: @escaping @Sendable () throws -> T) {
        Thread { [self] in
            result = Result(catching: work)
            done.signal()
        }.start()
    }

    func wait() throws -> T {
        done.wait()
        return try result!.get()
    }
}
