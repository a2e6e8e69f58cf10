import CZeroMQ

public struct PollEvents: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    public static let readable = PollEvents(rawValue: Int16(ZMQ_POLLIN))
    public static let writable = PollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

/// Waits on several sockets at once with `zmq_poll` (the stable API; Debian's libzmq has no
/// draft `zmq_poller`). A loop over a fixed set of sockets builds one and polls it every pass
/// (`zmq_poll` sets each item's events afresh); one whose set changes builds one a pass.
public struct Poller {
    private var sockets: [Socket] = []
    private var items: [zmq_pollitem_t] = []

    public init() {}

    /// Returns the index to look up the result with.
    @discardableResult
    public mutating func add(_ socket: Socket, _ events: PollEvents = .readable) -> Int {
        sockets.append(socket)
        items.append(zmq_pollitem_t(socket: socket.handle, fd: 0, events: events.rawValue, revents: 0))
        return items.count - 1
    }

    /// Waits up to `timeoutMilliseconds` (never forever: loops need their tick). A signal
    /// interrupting the wait counts as a timeout with nothing ready.
    @discardableResult
    public mutating func poll(timeoutMilliseconds: Int) throws -> Int {
        let count = items.count
        let rc = items.withUnsafeMutableBufferPointer { zmq_poll($0.baseAddress, Int32(count), timeoutMilliseconds) }
        if rc < 0 {
            let error = ZMQError.last("zmq_poll")
            if error.isInterrupted { return 0 }
            throw error
        }
        return Int(rc)
    }

    public func events(at index: Int) -> PollEvents { PollEvents(rawValue: items[index].revents) }
    public func isReadable(_ index: Int) -> Bool { events(at: index).contains(.readable) }
    public func isWritable(_ index: Int) -> Bool { events(at: index).contains(.writable) }
}
