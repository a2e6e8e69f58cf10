import CZeroMQ
import Foundation

/// One frame owned by libzmq. Forwarding a received `Message` with `Socket.send(messages:)`
/// hands libzmq the same buffer, so a relay moves payloads without copying them.
public final class Message {
    let pointer: UnsafeMutablePointer<zmq_msg_t>

    public init() {
        pointer = .allocate(capacity: 1)
        zmq_msg_init(pointer)
    }

    public init(bytes: UnsafeRawBufferPointer) {
        pointer = .allocate(capacity: 1)
        zmq_msg_init_size(pointer, bytes.count)
        if bytes.count > 0, let base = bytes.baseAddress {
            zmq_msg_data(pointer).copyMemory(from: base, byteCount: bytes.count)
        }
    }

    public convenience init<D: ContiguousBytes>(_ data: D) {
        self.init(placeholder: ())
        data.withUnsafeBytes { bytes in
            zmq_msg_init_size(pointer, bytes.count)
            if bytes.count > 0, let base = bytes.baseAddress {
                zmq_msg_data(pointer).copyMemory(from: base, byteCount: bytes.count)
            }
        }
    }

    private init(placeholder: Void) {
        pointer = .allocate(capacity: 1)
    }

    deinit {
        zmq_msg_close(pointer)
        pointer.deallocate()
    }

    public var count: Int { zmq_msg_size(pointer) }

    /// Valid only while this message is alive and has not been sent.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: count))
    }

    public var data: Data { withUnsafeBytes { Data($0) } }
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
    public var string: String { String(decoding: withUnsafeBytes { Array($0) }, as: UTF8.self) }

    var hasMore: Bool { zmq_msg_more(pointer) != 0 }
}
