import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Set once when the service should stop; loops check it every tick.
public final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func request() { flag.store(true, ordering: .releasing) }
    public var isRequested: Bool { flag.load(ordering: .acquiring) }
}

/// A blocking ZeroMQ poll loop as a `Service`. libzmq calls block, so they run on a thread of
/// their own rather than on Swift's cooperative pool; the loop creates and owns its sockets on
/// that thread and returns when `stop` is requested (graceful shutdown or cancellation).
public struct LoopService: Service {
    public let name: String
    private let body: @Sendable (StopSignal) throws -> Void

    public init(name: String, body: @escaping @Sendable (StopSignal) throws -> Void) {
        self.name = name
        self.body = body
    }

    public func run() async throws {
        let stop = StopSignal()
        let body = self.body
        let name = self.name
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                    let thread = Thread {
                        // Foundation on Linux keeps a name set before start to itself: the
                        // kernel's name (top -H, perf) is set here, or it is the starter's.
                        if let comm = fopen("/proc/thread-self/comm", "w") {
                            fputs(String(name.prefix(15)), comm)
                            fclose(comm)
                        }
                        do {
                            try body(stop)
                            continuation.resume()
                        } catch {
                            continuation.resume(throwing: error)
                        }
                    }
                    thread.name = name
                    thread.stackSize = 4 << 20
                    thread.start()
                }
            } onCancel: {
                stop.request()
            }
        } onGracefulShutdown: {
            stop.request()
        }
    }
}
