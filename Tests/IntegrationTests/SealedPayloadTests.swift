import FerryProtocol
import Foundation
import Testing

@Suite struct SealedPayloads {
    /// What a dedicated relay forwards, captured off the wire with tcpdump (no transport
    /// encryption anywhere on the path), holds not one sample of the content; the origin's own
    /// HTTP traffic, captured the same way, holds every sample, which shows the capture and the
    /// search work.
    @Test func aRelayForwardsNoPlaintext() throws {
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let b = try stack.startAgent("b")
        let a = try stack.startAgent("a")
        let file = try stack.randomFile("content.bin", mebibytes: 8)
        let content = try stack.publish(file)
        let plain = try Data(contentsOf: file)

        let relayPort = stack.relays[0].split(separator: ":").last.map(String.init) ?? ""
        let fromOrigin = try Capture(stack, name: "origin", filter: "tcp port \(stack.originPort)")
        defer { fromOrigin.stop() }
        #expect(try stack.get(content, via: b).ok)
        let originBytes = try fromOrigin.finish(atLeast: plain.count)
        try waitForHoldings(stack, b, hold: content)

        let throughRelay = try Capture(stack, name: "relay", filter: "tcp port \(relayPort)")
        defer { throughRelay.stop() }
        let output = stack.directory.appendingPathComponent("a.bin")
        let result = try stack.get(content, via: a, output: output)
        #expect(result.ok && result.sources.map(\.kind) == [.peer], "\(result.error ?? "") \(result.sources)")
        #expect(try Data(contentsOf: output) == plain)
        let relayBytes = try throughRelay.finish(atLeast: plain.count)

        let samples = Samples(of: plain, every: 1000, length: 32)
        let inOrigin = samples.found(in: originBytes), inRelay = samples.found(in: relayBytes)
        // A loaded machine's tcpdump may miss a packet or two; a broken capture or search finds
        // next to none, which is what this guards against.
        #expect(inOrigin * 100 >= samples.count * 99, "the origin's capture holds \(inOrigin) of \(samples.count) samples: the capture or the search is broken")
        #expect(inRelay == 0, "\(inRelay) of \(samples.count) plaintext samples crossed the relay")
        print("sealed payloads: relay capture \(relayBytes.count / 1024) KiB holds \(inRelay) of \(samples.count) plaintext samples; origin capture holds \(inOrigin)")
    }
}

/// tcpdump on loopback for the life of one transfer.
private struct Capture {
    let process = Process()
    let path: String

    init(_ stack: Stack, name: String, filter: String) throws {
        path = stack.path("\(name).pcap")
        let errors = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/tcpdump")
        // A large buffer: loopback packets are up to 64 KiB, and a dropped one would hide bytes.
        process.arguments = ["-i", "lo", "-U", "-s", "0", "-B", "131072", "-w", path] + filter.split(separator: " ").map(String.init)
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // It says so once it is capturing; what it misses before that would make the test lie.
        var said = Data()
        let deadline = Date().addingTimeInterval(10)
        while !String(decoding: said, as: UTF8.self).contains("listening on"), Date() < deadline, process.isRunning {
            said += errors.fileHandleForReading.availableData
        }
        guard String(decoding: said, as: UTF8.self).contains("listening on") else {
            stop()
            throw StackError("tcpdump did not start (Scripts/test installs it; it needs root): \(String(decoding: said, as: UTF8.self))")
        }
    }

    /// Stops once the capture holds at least `bytes` (it writes each packet as it sees it).
    func finish(atLeast bytes: Int) throws -> Data {
        try waitUntil("tcpdump to write the transfer", timeout: 20) {
            ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) >= bytes
        }
        stop()
        return try Data(contentsOf: URL(fileURLWithPath: path))
    }

    /// SIGTERM (tcpdump flushes and exits), then SIGKILL if it lingers; safe to call twice.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// Short slices of the content, found in a haystack in one pass by their first eight bytes.
private struct Samples {
    var byPrefix: [UInt64: [Data]] = [:]
    var count = 0

    init(of content: Data, every stride: Int, length: Int) {
        // The test files repeat a random mebibyte (stamped here and there), so samples repeat:
        // each distinct one counts once.
        var distinct = Set<Data>()
        for offset in Swift.stride(from: 0, to: content.count - length, by: stride) {
            let sample = content.subdata(in: offset..<offset + length)
            guard distinct.insert(sample).inserted else { continue }
            byPrefix[sample.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }, default: []].append(sample)
        }
        count = distinct.count
    }

    func found(in haystack: Data) -> Int {
        var seen = Set<Data>()
        haystack.withUnsafeBytes { raw in
            guard raw.count >= 32 else { return }
            for offset in 0...(raw.count - 32) {
                guard let candidates = byPrefix[raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)] else { continue }
                for sample in candidates where !seen.contains(sample) {
                    if sample.elementsEqual(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + sample.count])) { seen.insert(sample) }
                }
            }
        }
        return seen.count
    }
}
