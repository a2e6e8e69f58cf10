import Foundation

/// Turns a bind address such as `tcp://*:7200` or `tcp://0.0.0.0:7200` into one a peer on
/// this host can connect to.
public func connectable(_ endpoint: String) -> String {
    endpoint.replacingOccurrences(of: "://*:", with: "://127.0.0.1:").replacingOccurrences(of: "://0.0.0.0:", with: "://127.0.0.1:")
}

/// The address others reach a bound endpoint at. A wildcard bind (`tcp://*:7200`, as in a
/// container) is advertised on this host's first non-loopback IPv4 address, which in a
/// container is the container's address; any other bind is advertised as it is.
public func advertised(_ endpoint: String) -> String {
    guard endpoint.contains("://*:") || endpoint.contains("://0.0.0.0:"), let address = primaryIPv4Address() else {
        return connectable(endpoint)
    }
    return endpoint.replacingOccurrences(of: "://*:", with: "://\(address):").replacingOccurrences(of: "://0.0.0.0:", with: "://\(address):")
}

func primaryIPv4Address() -> String? {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0, let first = list else { return nil }
    defer { freeifaddrs(list) }
    var cursor: UnsafeMutablePointer<ifaddrs>? = first
    while let entry = cursor {
        defer { cursor = entry.pointee.ifa_next }
        guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET),
              entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0, entry.pointee.ifa_flags & UInt32(IFF_UP) != 0 else { continue }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        let ok = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
            var raw = inet.pointee.sin_addr
            return inet_ntop(AF_INET, &raw, &text, socklen_t(INET_ADDRSTRLEN)) != nil
        }
        if ok { return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }
    return nil
}
