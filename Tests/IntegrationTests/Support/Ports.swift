import Foundation
import Synchronization

/// Free loopback TCP ports, so each test runs its own stack and tests can run side by side.
/// They come from below the kernel's ephemeral range (32768 and up): a port taken from that
/// range could be grabbed as the local port of some outgoing connection before the service
/// binds it.
enum Ports {
    private static let handedOut = Mutex<Set<UInt16>>([])

    static func free() -> UInt16 {
        while true {
            let port = UInt16.random(in: 20_000..<32_000)
            guard handedOut.withLock({ $0.insert(port).inserted }), isFree(port) else { continue }
            return port
        }
    }

    private static func isFree(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}
