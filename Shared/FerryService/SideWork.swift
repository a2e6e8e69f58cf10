import Foundation

/// Threads a service owns for blocking work beside its poll loop: HTTP to the origin (a
/// manifest, a range fetch), enrolment. Not the poll thread, whose sockets must keep moving,
/// and not Swift's cooperative pool, which has two threads here and which `BlockingHTTP` must
/// never block. A job reports back through the service's own inproc doorbell (its mailbox),
/// so the loop wakes the moment a result is posted.
///
/// Threads start as jobs need them, up to `limit`, and wait for the next job once idle; beyond
/// the limit a job queues until one is free. `stop` ends the threads as their jobs end: each
/// job watches a `StopSignal` of its own.
public final class SideWork: @unchecked Sendable {
    private let name: String
    private let limit: Int
    /// Guards everything below it.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var threads = 0
    private var idle = 0
    private var stopping = false

    public init(name: String, limit: Int = 16) {
        self.name = name
        self.limit = max(1, limit)
    }

    /// Runs `job` on one of the threads; false once stopped.
    @discardableResult
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return false }
        jobs.append(job)
        // An idle thread that was signalled may not have taken its job yet: count jobs waiting
        // against threads idle, so a quick second job doesn't queue behind a long first one.
        if jobs.count > idle && threads < limit {
            threads += 1
            let thread = Thread { [self] in work() }
            thread.name = "\(name)-side-\(threads)"
            thread.start()
        } else {
            condition.signal()
        }
        return true
    }

    /// Jobs not yet started are dropped; running ones finish when their stop signals say so.
    public func stop() {
        condition.lock()
        stopping = true
        jobs.removeAll()
        condition.broadcast()
        condition.unlock()
    }

    public var threadCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return threads
    }

    private func work() {
        while let job = next() { job() }
    }

    private func next() -> (@Sendable () -> Void)? {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty && !stopping {
            idle += 1
            condition.wait()
            idle -= 1
        }
        guard !stopping else {
            threads -= 1
            return nil
        }
        return jobs.removeFirst()
    }
}
