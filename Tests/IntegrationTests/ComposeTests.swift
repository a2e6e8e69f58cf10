import Foundation
import Testing

@Suite struct ComposeFile {
    /// compose/compose.yaml, proven without a Docker engine: validated against the compose
    /// specification, then every service started exactly as the file says (command,
    /// environment, healthcheck, depends_on), each in a network namespace of its own like a
    /// container, with the relay scaled to 3 and two devices; a download goes through it.
    @Test func theComposeFileRunsAndDelivers() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        try #require(getuid() == 0, "the compose check makes network namespaces: it must run as root (CI does)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [root.appendingPathComponent("compose/run_local.py").path, "--bin", Stack.binaries.path,
                             "--scale", "relay=3", "--scale", "agent=2"]
        process.currentDirectoryURL = root
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let facts = text.split(separator: "\n").filter { $0.hasPrefix("compose-check: ") }.map { $0.dropFirst(15) }
        print(facts.joined(separator: "\n"))
        #expect(process.terminationStatus == 0, "compose check failed:\n\(text.suffix(3000))")
        #expect(facts.contains("schema=valid"))
        #expect(facts.contains("relays-registered=3"))
        #expect(facts.contains { $0.hasPrefix("healthy=") && $0.contains("relayx3") && $0.contains("agentx2") })
        #expect(facts.contains { $0.hasPrefix("download-peer=ok source=peer") })
        #expect(facts.last == "PASS")
    }
}
