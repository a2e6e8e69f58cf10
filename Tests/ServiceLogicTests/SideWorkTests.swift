import FerryService
import Foundation
import Synchronization
import Testing

/// The threads a service owns for blocking work: a long job never holds up the next, the
/// limit holds, and once stopped nothing new starts.
@Suite struct SideWorkThreads {
    @Test func aLongJobDoesNotHoldUpTheNextAndTheLimitHolds() throws {
        let work = SideWork(name: "test", limit: 2)
        let release = StopSignal()
        let started = Atomic<Int>(0)
        for _ in 0..<3 {
            #expect(work.submit {
                started.add(1, ordering: .sequentiallyConsistent)
                while !release.isRequested { Thread.sleep(forTimeInterval: 0.005) }
            })
        }
        let deadline = Date().addingTimeInterval(5)
        while started.load(ordering: .sequentiallyConsistent) < 2, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        Thread.sleep(forTimeInterval: 0.1)
        #expect(started.load(ordering: .sequentiallyConsistent) == 2, "two threads at most: the third job waits")
        #expect(work.threadCount == 2)
        release.request()
        while started.load(ordering: .sequentiallyConsistent) < 3, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        #expect(started.load(ordering: .sequentiallyConsistent) == 3, "the queued job runs once a thread is free")
        work.stop()
        #expect(!work.submit {}, "a stopped pool takes nothing")
        while work.threadCount > 0, Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        #expect(work.threadCount == 0, "its threads end")
    }
}
