import CZeroMQ
import Foundation
import Synchronization

/// A CurveZMQ key pair: 32-byte Curve25519 keys, the same kind X25519 uses.
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: [UInt8]
    public let secretKey: [UInt8]

    public init(publicKey: [UInt8], secretKey: [UInt8]) {
        precondition(publicKey.count == 32 && secretKey.count == 32, "CURVE keys are 32 bytes")
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh pair from libzmq (libsodium underneath).
    public static func generate() throws -> CurveKeyPair {
        var publicText = [CChar](repeating: 0, count: 41), secretText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicText, &secretText) == 0 else { throw ZMQError.last("zmq_curve_keypair") }
        return CurveKeyPair(publicKey: Z85.decode(text(publicText))!, secretKey: Z85.decode(text(secretText))!)
    }

    /// The pair whose secret is `secretKey` (for an X25519 key made elsewhere).
    public init(secretKey: [UInt8]) throws {
        precondition(secretKey.count == 32, "CURVE keys are 32 bytes")
        let secretText = Z85.encode(secretKey)
        var publicText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicText, secretText) == 0 else { throw ZMQError.last("zmq_curve_public") }
        self.init(publicKey: Z85.decode(text(publicText))!, secretKey: secretKey)
    }
}

/// ZeroMQ's Z85 text form of keys (RFC 32): 40 characters for 32 bytes.
public enum Z85 {
    public static func encode(_ bytes: [UInt8]) -> String {
        precondition(bytes.count % 4 == 0, "Z85 encodes multiples of 4 bytes")
        var text = [CChar](repeating: 0, count: bytes.count * 5 / 4 + 1)
        _ = bytes.withUnsafeBufferPointer { zmq_z85_encode(&text, $0.baseAddress, $0.count) }
        return ZeroMQ.text(text)
    }

    /// Nil for text that is not Z85 of a whole number of 4-byte groups.
    public static func decode(_ text: String) -> [UInt8]? {
        guard !text.isEmpty, text.utf8.count % 5 == 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: text.utf8.count * 4 / 5)
        guard zmq_z85_decode(&bytes, text) != nil else { return nil }
        return bytes
    }
}

extension Socket {
    /// Makes this socket a CURVE server with `keys`: every peer must complete the handshake,
    /// and the context's ZAP handler (see `ZAPRequest`) decides which client keys are let in.
    /// `domain` tells the handler which admission rule applies. Call before `bind`.
    public func makeCurveServer(_ keys: CurveKeyPair, domain: String) throws {
        try setOption(ZMQ_ZAP_DOMAIN, bytes: Array(domain.utf8))
        try setOption(ZMQ_CURVE_SERVER, 1)
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: keys.secretKey)
    }

    /// Makes this socket a CURVE client of the server whose public key is `serverKey`. Call
    /// before `connect`; the handshake fails (silently, and is retried) with any other server.
    public func makeCurveClient(_ keys: CurveKeyPair, serverKey: [UInt8]) throws {
        try setOption(ZMQ_CURVE_SERVERKEY, bytes: serverKey)
        try setOption(ZMQ_CURVE_PUBLICKEY, bytes: keys.publicKey)
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: keys.secretKey)
    }
}

extension Socket {
    public func disconnect(_ endpoint: String) throws {
        guard zmq_disconnect(handle, endpoint) == 0 else { throw ZMQError.last("disconnect \(endpoint)") }
    }

    /// A PAIR socket that turns readable at each CURVE refusal of this socket (a ZAP handler
    /// said no), for `RefusalWatch`: libzmq never reconnects a refused connection by itself.
    func refusals(in context: Context) throws -> Socket {
        try monitor(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, in: context)
    }

    /// A PAIR socket that turns readable each time this socket loses a connection it had
    /// (libzmq's monitor, `ZMQ_EVENT_DISCONNECTED`): when the peer's process dies its kernel
    /// closes the connection, so a link learns it at once instead of from silence. Made
    /// before `connect`. Closing either socket ends the monitor.
    public func disconnections(in context: Context) throws -> Socket {
        try monitor(ZMQ_EVENT_DISCONNECTED, in: context)
    }

    private func monitor(_ events: Int32, in context: Context) throws -> Socket {
        guard case .none = monitoring else { preconditionFailure("libzmq keeps one monitor per socket") }
        let address = "inproc://monitor-\(Self.monitors.add(1, ordering: .relaxed).newValue)"
        guard zmq_socket_monitor(handle, address, events) == 0 else { throw ZMQError.last("zmq_socket_monitor") }
        monitoring = .watched
        let pair = try context.socket(.pair)
        pair.monitoring = .reading(self)
        try pair.connect(address)
        return pair
    }

    /// Ends libzmq's monitor this socket takes part in, either end, so no event is sent to a
    /// reader about to go.
    func stopMonitoring() {
        switch monitoring {
        case .none: return
        case .watched: zmq_socket_monitor(handle, nil, 0)
        case .reading(let watched): watched.stopMonitoring()
        }
        monitoring = .none
    }

    private static let monitors = Atomic<Int>(0)
}

/// Reconnects client sockets whose server refused their key. libzmq gives up on a connection
/// once a ZAP handler refuses it, but a device's key is refused until its enrolment reaches the
/// origin, or while the origin can't be asked; so a refused connection is tried again, every
/// few seconds, for as long as the socket lives. Owned by the thread that owns the sockets.
public final class RefusalWatch {
    private struct Watched {
        let socket: Socket
        let monitor: Socket
        let endpoint: String
        var retryAt: ContinuousClock.Instant?
    }
    private var watched: [Watched] = []
    private let context: Context
    private let retryAfter: Duration
    public private(set) var refusals = 0

    public init(context: Context, retryAfter: Duration = .seconds(2)) {
        self.context = context
        self.retryAfter = retryAfter
    }

    /// Connects `socket` (already made a CURVE client) and watches it.
    public func connect(_ socket: Socket, _ endpoint: String) throws {
        let monitor = try socket.refusals(in: context)
        try socket.connect(endpoint)
        watched.append(Watched(socket: socket, monitor: monitor, endpoint: endpoint, retryAt: nil))
    }

    /// Stops watching a socket about to be closed.
    public func forget(_ socket: Socket) {
        watched.removeAll { entry in
            guard entry.socket === socket else { return false }
            entry.monitor.close()
            return true
        }
    }

    /// Call from the owning loop's tick: notes new refusals and reconnects those due.
    public func retryRefused(now: ContinuousClock.Instant = .now) {
        for index in watched.indices {
            while (try? watched[index].monitor.receive(dontWait: true)) != nil {
                refusals += 1
                if watched[index].retryAt == nil { watched[index].retryAt = now + retryAfter }
            }
            if let due = watched[index].retryAt, now >= due {
                watched[index].retryAt = nil
                try? watched[index].socket.disconnect(watched[index].endpoint)
                try? watched[index].socket.connect(watched[index].endpoint)
            }
        }
    }

    deinit { for entry in watched { entry.monitor.close() } }
}

extension Message {
    /// A property of the connection this message came in on: "User-Id" is what the ZAP
    /// handler said of the peer, "Peer-Address" its IP; custom names are the handler's metadata.
    public func property(_ name: String) -> String? {
        guard let value = zmq_msg_gets(pointer, name) else { return nil }
        return String(validatingCString: value)
    }
}

/// A NUL-terminated C string buffer as a Swift string.
func text(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
