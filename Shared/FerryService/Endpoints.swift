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
}

/// Turns a bind address such as `tcp://*:7200` or `tcp://0.0.0.0:7200` into one a peer on
/// this host can connect to.
public func connectable(_ endpoint: String) -> String {
    endpoint.replacingOccurrences(of: "://*:", with: "://127.0.0.1:").replacingOccurrences(of: "://0.0.0.0:", with: "://127.0.0.1:")
}
