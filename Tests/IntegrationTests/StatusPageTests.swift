import FerryProtocol
import Foundation
import Testing

@Suite struct LiveStatusPage {
    /// The origin's status page, loaded in headless Chromium while a transfer runs: the
    /// transfer and its relay appear, and the progress shown moves on its own (the page is fed
    /// by the event stream, not reloaded). The page is the operator's: refused without the
    /// token, shown with it given as a browser gives it, the Basic-auth password.
    @Test func theStatusPageShowsATransferMoving() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv-tools/bin/python")
        try #require(FileManager.default.isExecutableFile(atPath: python.path), "run Scripts/compose-tools first (Scripts/test does)")
        let stack = try Stack(relays: 1)
        defer { stack.stop() }
        let holder = try stack.startAgent("h", extra: ["--upload-rate", "4M"])  // slow enough to watch
        let device = try stack.startAgent("d")
        let content = try stack.publish(try stack.randomFile("page.bin", mebibytes: 32))
        #expect(try stack.get(content, via: holder).ok)
        try waitForHoldings(stack, holder, hold: content)
        let relayId = try stack.status(stack.relays[0]).id

        let getter = try startGet(stack, content, via: device, output: stack.directory.appendingPathComponent("d.bin"))
        try stack.events.waitFor("the peer transfer to start") {
            $0.topic == "transfer.started" && $0.data["deviceId"]?.stringValue == device.deviceId && $0.data["source"]?.stringValue != "origin"
        }
        let screenshot = stack.directory.appendingPathComponent("status-page.png")
        let browser = Process()
        browser.executableURL = python
        browser.arguments = [root.appendingPathComponent("Tests/IntegrationTests/status_page.py").path,
                             "\(stack.originURL)/status", relayId, screenshot.path, stack.operatorToken]
        let output = Pipe()
        browser.standardOutput = output
        try browser.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        browser.waitUntilExit()
        #expect(browser.terminationStatus == 0, "\(text)")
        let seen = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        // Without the operator token the page is refused with a challenge a browser answers.
        let refused = seen["refused"] as? [String: Any]
        #expect(refused?["status"] as? Int == 401, "\(text)")
        #expect((refused?["challenge"] as? String)?.hasPrefix("Basic") == true, "\(text)")
        #expect(seen["relayShown"] as? Bool == true && seen["transferShown"] as? Bool == true)
        #expect(seen["offloadShown"] as? Bool == true)
        let first = seen["first"] as? Int ?? 0, second = seen["second"] as? Int ?? 0
        #expect(second > first, "progress did not move on the page: \(first)% then \(second)%")
        print("status page: relay and transfer shown, progress \(first)% then \(second)% 2.5 s later; screenshot \(screenshot.path)")
        getter.waitUntilExit()
        #expect(getter.terminationStatus == 0)
        if let keep = ProcessInfo.processInfo.environment["FERRY_STATUS_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(at: screenshot, to: URL(fileURLWithPath: keep))
        }
    }
}
