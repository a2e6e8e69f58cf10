import CZeroMQ

/// A failed libzmq call. Callers mostly need to tell three conditions apart: the call would block
/// (EAGAIN), the context is shutting down (ETERM), or a signal interrupted it (EINTR).
public struct ZMQError: Error, CustomStringConvertible, Sendable, Equatable {
    public let code: Int32
    public let operation: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    static func last(_ operation: String) -> ZMQError {
        ZMQError(code: zmq_errno(), operation: operation)
    }

    public var wouldBlock: Bool { code == EAGAIN }
    public var isTerminated: Bool { code == ETERM }
    public var isInterrupted: Bool { code == EINTR }
    /// ROUTER_MANDATORY reports an unknown or disconnected peer identity this way.
    public var isHostUnreachable: Bool { code == EHOSTUNREACH }

    public var description: String {
        "\(operation): \(String(cString: zmq_strerror(code))) (errno \(code))"
    }
}
