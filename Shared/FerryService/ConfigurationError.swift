/// A setting that can't work, reported at start with the variable or flag to fix.
public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Whether an endpoint can only be reached from this host: ipc, or tcp on a loopback address.
public func isLocalOnly(_ endpoint: String) -> Bool {
    if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
    guard endpoint.hasPrefix("tcp://") else { return false }
    let address = endpoint.dropFirst(6)
    guard let portSeparator = address.lastIndex(of: ":") else { return false }
    let host = address[..<portSeparator]
    return host.hasPrefix("127.") || host == "localhost" || host == "[::1]"
}
