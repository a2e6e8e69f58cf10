import Foundation

/// Default addresses, one place. docs/configuration.md lists them with their variables.
public enum DefaultEndpoint {
    public static let originURL = "http://127.0.0.1:7080"
    public static let intake = "tcp://127.0.0.1:7100"
    public static let matcher = "tcp://127.0.0.1:7110"
    public static let holdings = "tcp://127.0.0.1:7111"
    public static let broker = "tcp://127.0.0.1:7120"
    public static let brokerControl = "tcp://127.0.0.1:7121"
    public static let reporter = "tcp://127.0.0.1:7130"
    public static let relay = "tcp://127.0.0.1:7200"
    public static let eventsOut = "tcp://127.0.0.1:7300"
    public static let eventsIn = "tcp://127.0.0.1:7301"
    public static let agentControl = "tcp://127.0.0.1:7400"
    public static let intakeStatus = "tcp://127.0.0.1:7101"
    public static let matcherStatus = "tcp://127.0.0.1:7112"
    public static let reporterStatus = "tcp://127.0.0.1:7131"
    public static let eventBusStatus = "tcp://127.0.0.1:7302"
}

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
