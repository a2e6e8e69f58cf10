import Foundation
import Testing

@Suite struct Probes {
    /// Every binary's `probe` (the compose healthcheck) asks its running service over the
    /// service's own socket: it passes while the service serves and fails once it is gone.
    @Test func everyServiceAnswersItsProbeAndFailsItWhenStopped() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let agent = try stack.startAgent("a")
        let probes: [(process: String, executable: String, arguments: [String])] = [
            ("eventbus", "ferry-eventbus", ["--status-bind", stack.status["eventbus"]!]),
            ("intake", "ferry-intake", ["--status-bind", stack.status["intake"]!]),
            ("matcher", "ferry-matcher", ["--status-bind", stack.status["matcher"]!]),
            ("reporter", "ferry-reporter", ["--status-bind", stack.status["reporter"]!]),
            ("broker", "ferry-broker", ["--control-bind", stack.brokerControl]),
            ("relay-1", "ferry-relay", ["--bind", stack.relays[0]]),
            ("origin", "ferry-origin", ["--port", String(stack.originPort)]),
            ("agent-a", "ferry-agent", ["--control", agent.control]),
        ]
        for probe in probes {
            let result = try stack.run(probe.executable, ["probe"] + probe.arguments)
            #expect(result.status == 0, "\(probe.executable) probe failed while serving: \(result.stdout)\(result.stderr)")
        }
        for probe in probes { stack.signal(probe.process, SIGTERM) }
        for probe in probes {
            try waitUntil("\(probe.process) to stop") { stack.processes[probe.process]?.isRunning == false }
            let result = try stack.run(probe.executable, ["probe"] + probe.arguments)
            #expect(result.status == 1, "\(probe.executable) probe passed with the service stopped: \(result.stdout)")
        }
    }
}
