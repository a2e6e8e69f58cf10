import CZeroMQ

/// A libzmq context. libzmq documents contexts as thread-safe, so sharing one across threads
/// and tasks is sound; sockets are not, see `Socket`.
public final class Context: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    public init(ioThreads: Int32 = 1) throws {
        guard let handle = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        if zmq_ctx_set(handle, ZMQ_IO_THREADS, ioThreads) != 0 {
            zmq_ctx_term(handle)
            throw ZMQError.last("zmq_ctx_set(ZMQ_IO_THREADS)")
        }
        self.handle = handle
    }

    /// Every socket holds a strong reference to its context, so this only runs once all of them
    /// are closed; `zmq_ctx_term` would otherwise block forever on an open socket.
    deinit {
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    public func socket(_ type: SocketType) throws -> Socket {
        try Socket(context: self, type: type)
    }
}
