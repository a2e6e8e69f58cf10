import Foundation
import Testing
import ZeroMQ

@Suite struct Sockets {
    @Test func pushPullMultipart() throws {
        let context = try Context()
        let pull = try context.socket(.pull)
        try pull.bind("tcp://127.0.0.1:*")
        let push = try context.socket(.push)
        try push.connect(pull.lastEndpoint)
        try push.send(strings: ["one", "two", "three"])
        let frames = try #require(try pull.receive())
        #expect(frames.map(\.string) == ["one", "two", "three"])
    }

    @Test func routerSeesDealerIdentityAndRoutesBack() throws {
        let context = try Context()
        let router = try context.socket(.router)
        try router.setRouterMandatory(true)
        try router.bind("tcp://127.0.0.1:*")
        let dealer = try context.socket(.dealer)
        try dealer.setIdentity("100.96.0.7")
        try dealer.connect(router.lastEndpoint)
        try dealer.send(strings: ["hello"])
        let frames = try #require(try router.receive())
        #expect(frames[0].string == "100.96.0.7")
        // Forward the received payload message itself: no copy.
        try router.send(messages: [Message(Data("100.96.0.7".utf8)), frames[1]])
        #expect(try dealer.receive()?.map(\.string) == ["hello"])
    }

    @Test func mandatoryRouterReportsUnknownPeers() throws {
        let context = try Context()
        let router = try context.socket(.router)
        try router.setRouterMandatory(true)
        try router.bind("tcp://127.0.0.1:*")
        do {
            try router.send(strings: ["nobody", "x"], dontWait: true)
            Issue.record("sending to an unknown identity succeeded")
        } catch let error as ZMQError {
            #expect(error.isHostUnreachable)
        }
    }

    /// A monitor's reader closed while the socket it watches lives on (a link closed with a
    /// linger): the lost connection that follows is an event nobody reads, and libzmq's I/O
    /// thread must not wait on it; every other socket of the context still talks.
    @Test func aClosedMonitorNeverStallsTheContext() throws {
        let context = try Context()
        let (router, dealer, disconnections) = try monitoredConnection(in: context)
        defer { withExtendedLifetime(dealer) {} }  // the monitored socket lives on, as a lingering one does
        disconnections.close()
        router.close()
        Thread.sleep(forTimeInterval: 0.2)
        let pull = try context.socket(.pull)
        try pull.bind("tcp://127.0.0.1:*")
        let push = try context.socket(.push)
        try push.connect(pull.lastEndpoint)
        try push.send(strings: ["still talking"], dontWait: true)
        var poller = Poller()
        poller.add(pull)
        #expect(try poller.poll(timeoutMilliseconds: 3000) == 1, "the I/O thread is stuck on a monitor event")
        #expect(try pull.receive(dontWait: true)?.map(\.string) == ["still talking"])
    }

    /// The monitor reports a lost connection while its reader is open.
    @Test func aLostConnectionIsReported() throws {
        let context = try Context()
        let (router, dealer, disconnections) = try monitoredConnection(in: context)
        router.close()
        var poller = Poller()
        poller.add(disconnections)
        #expect(try poller.poll(timeoutMilliseconds: 3000) == 1)
        dealer.close()
        disconnections.close()
    }

    /// A dealer connected to a router, a message through, its disconnections monitored.
    private func monitoredConnection(in context: Context) throws -> (router: Socket, dealer: Socket, disconnections: Socket) {
        let router = try context.socket(.router)
        try router.bind("tcp://127.0.0.1:*")
        let dealer = try context.socket(.dealer)
        let disconnections = try dealer.disconnections(in: context)
        try dealer.connect(router.lastEndpoint)
        try dealer.send(strings: ["hello"])
        #expect(try router.receive()?.last?.string == "hello")
        return (router, dealer, disconnections)
    }

    @Test func dontWaitAndPollTimeout() throws {
        let context = try Context()
        let pull = try context.socket(.pull)
        try pull.bind("tcp://127.0.0.1:*")
        #expect(try pull.receive(dontWait: true) == nil)
        var poller = Poller()
        poller.add(pull)
        let start = Date()
        #expect(try poller.poll(timeoutMilliseconds: 100) == 0)
        #expect(Date().timeIntervalSince(start) >= 0.09)
        #expect(!poller.isReadable(0))
        // A PUSH with no peer can't queue when IMMEDIATE is set.
        let push = try context.socket(.push)
        try push.setImmediate(true)
        try push.connect("tcp://127.0.0.1:1")
        #expect(try push.send(strings: ["x"], dontWait: true) == false)
    }

    @Test func errorsAreTyped() throws {
        let context = try Context()
        let socket = try context.socket(.pub)
        #expect(throws: ZMQError.self) { try socket.bind("nonsense://") }
        #expect(ZMQError(code: EAGAIN, operation: "x").wouldBlock)
        #expect(ZMQError(code: EINTR, operation: "x").isInterrupted)
    }
}
