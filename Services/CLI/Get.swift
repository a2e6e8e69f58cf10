import ArgumentParser
import FerryProtocol
import FerryService
import Foundation
import ZeroMQ

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Get content through this device's agent: from peers through relays, or from the origin.")

    @Argument(help: "The content id (64 hex digits) that `ferry publish` printed.")
    var contentId: String

    @Option(name: .shortAndLong, help: "Also write the verified file here (atomically: never a partial file under this name); it must be under the agent's output directory (FERRY_AGENT_OUTPUT_DIR).")
    var output: String?

    @Option(help: Topology.agentControl.connectHelp("The agent's control endpoint."))
    var agent = Topology.agentControl.connectEndpoint

    @Option(help: "Give up after this many seconds.")
    var timeout: Double = 3600

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let id: ContentID
        do { id = try ContentID(contentId) } catch { throw ValidationError("\(error)") }
        let output = self.output.map { URL(fileURLWithPath: $0).path }
        let context = try Context()
        let socket = try context.socket(.dealer)
        try socket.setImmediate(true)
        try socket.connect(agent)
        var poller = Poller()
        poller.add(socket, .writable)
        try poller.poll(timeoutMilliseconds: 5000)
        guard poller.isWritable(0), try socket.send(try GetCommand(contentId: id, output: output).frames(), dontWait: true) else {
            printError("ferry: no agent answering at \(agent)")
            throw ExitStatus.unreachable
        }
        let display = ProgressDisplay(interactive: isatty(STDERR_FILENO) == 1 && !json)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var reader = Poller()
            reader.add(socket)
            try reader.poll(timeoutMilliseconds: 1000)
            guard let frames = try socket.receive(dontWait: true) else { continue }
            let envelope = try Envelope(frames: frames.map(\.data))
            switch envelope.kind {
            case GetProgress.kind:
                display.show(try envelope.decode(GetProgress.self))
            case GetResult.kind:
                let result = try envelope.decode(GetResult.self)
                display.finish()
                if json {
                    print(String(decoding: try JSONCoding.encoder.encode(result), as: UTF8.self))
                } else if result.ok {
                    print(summary(result))
                }
                guard result.ok else {
                    printError("ferry: get failed: \(result.error ?? "unknown error")")
                    throw ExitStatus.failed
                }
                return
            default:
                continue
            }
        }
        display.finish()
        printError("ferry: timed out after \(Int(timeout)) s")
        throw ExitStatus.unreachable
    }

    func summary(_ result: GetResult) -> String {
        let total = result.sources.reduce(UInt64(0)) { $0 + $1.bytes }
        let sources = result.sources.map { source -> String in
            let name = switch source.kind {
            case .peer: "peer \(source.device?.rawValue ?? "?")"
            case .origin: "origin"
            case .local: "already here"
            }
            return "\(name) \(formatBytes(source.bytes))"
        }.joined(separator: ", ")
        let rate = result.seconds > 0 ? String(format: " (%.1f MiB/s)", Double(total) / 1_048_576 / result.seconds) : ""
        return "got \(result.contentId.hex) \(formatBytes(total)) in \(String(format: "%.2f", result.seconds)) s\(rate) from \(sources) -> \(result.path ?? "?")"
    }
}

/// A progress bar on a terminal; a plain line every few seconds otherwise (logs, CI).
final class ProgressDisplay {
    let interactive: Bool
    let started = Date()
    var lastLine = Date.distantPast
    var shown = false

    init(interactive: Bool) { self.interactive = interactive }

    func show(_ progress: GetProgress) {
        let elapsed = Date().timeIntervalSince(started)
        let rate = elapsed > 0 ? Double(progress.receivedBytes) / elapsed : 0
        let fraction = progress.totalBytes > 0 ? Double(progress.receivedBytes) / Double(progress.totalBytes) : 0
        let eta = rate > 0 ? Double(progress.totalBytes - min(progress.totalBytes, progress.receivedBytes)) / rate : 0
        let numbers = "\(formatBytes(progress.receivedBytes))/\(formatBytes(progress.totalBytes)) \(String(format: "%.1f", rate / 1_048_576)) MiB/s ETA \(Int(eta)) s from \(progress.source)"
        if interactive {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(Data("\r[\(bar)] \(String(format: "%3.0f", fraction * 100))% \(numbers)\u{1B}[K".utf8))
            shown = true
        } else if Date().timeIntervalSince(lastLine) >= 2 {
            lastLine = Date()
            printError("progress \(String(format: "%.0f", fraction * 100))% \(numbers)")
        }
    }

    func finish() {
        if interactive && shown { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

func formatBytes(_ bytes: UInt64) -> String {
    let value = Double(bytes)
    let kib = 1024.0, mib = kib * 1024, gib = mib * 1024
    if value >= gib { return String(format: "%.2f GiB", value / gib) }
    if value >= mib { return String(format: "%.1f MiB", value / mib) }
    if value >= kib { return String(format: "%.1f KiB", value / kib) }
    return "\(bytes) B"
}

func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
