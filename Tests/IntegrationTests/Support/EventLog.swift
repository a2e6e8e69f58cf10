import FerryProtocol
import Foundation
import Synchronization
import ZeroMQ

/// Everything published on a stack's event stream, read by a SUB socket on its own thread.
final class EventLog: Sendable {
    private let events = Mutex<[FerryEvent]>([])
    private let stopped = Mutex(false)
    private let done = DispatchSemaphore(value: 0)

    init(endpoint: String) {
        let thread = Thread { [self] in
            defer { done.signal() }
            do {
                let context = try Context()
                let socket = try context.socket(.sub)
                try socket.subscribe("")
                try socket.connect(endpoint)
                while !stopped.withLock({ $0 }) {
                    var poller = Poller()
                    poller.add(socket)
                    try poller.poll(timeoutMilliseconds: 50)
                    while let frames = try socket.receive(dontWait: true) {
                        if let event = try? FerryEvent.decode(frames: frames.map(\.data)) {
                            events.withLock { $0.append(event) }
                        }
                    }
                }
                socket.close()
            } catch {
                FileHandle.standardError.write(Data("event log for \(endpoint) failed: \(error)\n".utf8))
            }
        }
        thread.start()
    }

    func stop() {
        stopped.withLock { $0 = true }
        done.wait()
    }

    var all: [FerryEvent] { events.withLock { $0 } }

    func matching(_ topic: String, requestId: String? = nil) -> [FerryEvent] {
        all.filter { $0.topic == topic && (requestId == nil || $0.requestId == requestId) }
    }

    func forRequest(_ requestId: String) -> [FerryEvent] {
        all.filter { $0.requestId == requestId }.sorted { $0.time < $1.time }
    }

    /// How many events have arrived: a mark to wait for only what comes after it.
    var mark: Int { events.withLock { $0.count } }

    /// Waits for an event that satisfies `predicate`, among those that arrived after `mark`.
    @discardableResult
    func waitFor(_ what: String, after mark: Int = 0, timeout: TimeInterval = 30, _ predicate: (FerryEvent) -> Bool) throws -> FerryEvent {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let event = all.dropFirst(mark).first(where: predicate) { return event }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw StackError("timed out after \(Int(timeout)) s waiting for \(what)")
    }

    @discardableResult
    func waitFor(topic: String, requestId: String? = nil, timeout: TimeInterval = 30) throws -> FerryEvent {
        try waitFor("\(topic)\(requestId.map { " for \($0)" } ?? "")", timeout: timeout) {
            $0.topic == topic && (requestId == nil || $0.requestId == requestId)
        }
    }
}

struct StackError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds; conditions, not fixed sleeps, pace every test.
func waitUntil(_ what: String, timeout: TimeInterval = 30, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? condition()) == true { return }
        Thread.sleep(forTimeInterval: 0.05)
    }
    throw StackError("timed out after \(Int(timeout)) s waiting for \(what)")
}
