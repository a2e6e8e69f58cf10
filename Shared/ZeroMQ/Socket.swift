import CZeroMQ
import Foundation

/// A libzmq socket. libzmq sockets are not thread-safe, so this type is deliberately not
/// `Sendable`: create it on the thread (or in the task) that uses it and keep it there.
public final class Socket {
    public let type: SocketType
    let handle: UnsafeMutableRawPointer
    // Keeps the context alive until this socket is closed; see `Context.deinit`.
    private let context: Context
    private var closed = false
    /// libzmq's monitor, as this socket takes part in it (see `monitor`).
    enum Monitoring {
        case none
        /// The monitor reports this socket's events.
        case watched
        /// This PAIR reads the events of that socket.
        case reading(Socket)
    }
    var monitoring = Monitoring.none

    init(context: Context, type: SocketType) throws {
        guard let handle = zmq_socket(context.handle, type.raw) else { throw ZMQError.last("zmq_socket(\(type))") }
        self.handle = handle
        self.context = context
        self.type = type
        // A process that exits must not wait for unsent messages to peers that may be gone.
        try setOption(ZMQ_LINGER, Int32(0))
    }

    deinit { close() }

    /// Closes the socket. With a linger, messages already queued still go out for that long in
    /// the background (closing does not block); by default they are dropped.
    public func close(lingerMilliseconds: Int32 = 0) {
        guard !closed else { return }
        // libzmq's I/O thread sends monitor events with a blocking send. Were the reading PAIR
        // gone while the monitored socket still lived (it lingers after close), the next event
        // (a lost connection) would block that thread, and every socket of the context with it,
        // for good: so closing either end stops the monitor first.
        stopMonitoring()
        closed = true
        var linger = lingerMilliseconds
        zmq_setsockopt(handle, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        zmq_close(handle)
    }

    // MARK: endpoints

    public func bind(_ endpoint: String) throws {
        guard zmq_bind(handle, endpoint) == 0 else { throw ZMQError.last("bind \(endpoint)") }
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZMQError.last("connect \(endpoint)") }
    }

    /// The endpoint actually bound, e.g. with the port a `tcp://127.0.0.1:*` bind picked.
    public var lastEndpoint: String {
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size)
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: options

    public func setOption(_ option: Int32, _ value: Int32) throws {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int32>.size) == 0 else {
            throw ZMQError.last("zmq_setsockopt(\(option))")
        }
    }

    public func setOption(_ option: Int32, bytes: [UInt8]) throws {
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        guard rc == 0 else { throw ZMQError.last("zmq_setsockopt(\(option))") }
    }

    /// The routing id a DEALER presents to a ROUTER; set before connecting.
    public func setIdentity(_ identity: String) throws { try setOption(ZMQ_ROUTING_ID, bytes: Array(identity.utf8)) }
    public func setSendHighWaterMark(_ messages: Int32) throws { try setOption(ZMQ_SNDHWM, messages) }
    public func setReceiveHighWaterMark(_ messages: Int32) throws { try setOption(ZMQ_RCVHWM, messages) }
    /// Makes a ROUTER report an unroutable identity (EHOSTUNREACH) instead of dropping silently.
    public func setRouterMandatory(_ on: Bool) throws { try setOption(ZMQ_ROUTER_MANDATORY, on ? 1 : 0) }
    /// Refuses messages larger than this before they are read into memory.
    public func setMaxMessageSize(_ bytes: Int64) throws {
        var value = bytes
        guard zmq_setsockopt(handle, ZMQ_MAXMSGSIZE, &value, MemoryLayout<Int64>.size) == 0 else {
            throw ZMQError.last("zmq_setsockopt(ZMQ_MAXMSGSIZE)")
        }
    }
    /// Lets a peer that reconnects with a routing id still in use take it over (a restarted
    /// agent or relay) instead of being refused.
    public func setRouterHandover(_ on: Bool) throws { try setOption(ZMQ_ROUTER_HANDOVER, on ? 1 : 0) }
    public func setSendTimeout(milliseconds: Int32) throws { try setOption(ZMQ_SNDTIMEO, milliseconds) }
    /// Queue only to completed connections, so a PUSH to a peer that is not up yet fails fast.
    public func setImmediate(_ on: Bool) throws { try setOption(ZMQ_IMMEDIATE, on ? 1 : 0) }
    /// An XPUB passes up every subscription, also one its subscriber repeats after reconnecting.
    public func setXPubVerbose(_ on: Bool) throws { try setOption(ZMQ_XPUB_VERBOSE, on ? 1 : 0) }
    public func subscribe(_ prefix: String) throws { try setOption(ZMQ_SUBSCRIBE, bytes: Array(prefix.utf8)) }

    // MARK: sending

    /// Sends all frames as one multipart message. With `dontWait`, returns false when the
    /// socket would block (high-water mark reached, or no peer yet) and nothing was sent.
    @discardableResult
    public func send(_ frames: [Data], dontWait: Bool = false) throws -> Bool {
        try send(messages: frames.map { Message($0) }, dontWait: dontWait)
    }

    @discardableResult
    public func send(strings frames: [String], dontWait: Bool = false) throws -> Bool {
        try send(frames.map { Data($0.utf8) }, dontWait: dontWait)
    }

    /// Sends messages without copying their buffers. libzmq queues a multipart message
    /// atomically: if the first frame is accepted, the rest are too.
    @discardableResult
    public func send(messages: [Message], dontWait: Bool = false) throws -> Bool {
        precondition(!messages.isEmpty, "a message has at least one frame")
        guard !closed else { throw ZMQError(code: ENOTSOCK, operation: "send on a closed socket") }
        for (index, message) in messages.enumerated() {
            var flags: Int32 = index < messages.count - 1 ? ZMQ_SNDMORE : 0
            if dontWait { flags |= ZMQ_DONTWAIT }
            while zmq_msg_send(message.pointer, handle, flags) < 0 {
                let error = ZMQError.last("send")
                if error.isInterrupted { continue }
                if error.wouldBlock && index == 0 { return false }
                throw error
            }
        }
        return true
    }

    // MARK: receiving

    /// Receives one whole multipart message, or nil with `dontWait` when none is waiting.
    public func receive(dontWait: Bool = false) throws -> [Message]? {
        guard !closed else { throw ZMQError(code: ENOTSOCK, operation: "receive on a closed socket") }
        var frames: [Message] = []
        repeat {
            let message = Message()
            while zmq_msg_recv(message.pointer, handle, dontWait && frames.isEmpty ? ZMQ_DONTWAIT : 0) < 0 {
                let error = ZMQError.last("receive")
                if error.isInterrupted { continue }
                if error.wouldBlock && frames.isEmpty { return nil }
                throw error
            }
            frames.append(message)
        } while frames.last!.hasMore
        return frames
    }
}
