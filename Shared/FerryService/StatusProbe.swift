import FerryProtocol
import Foundation
import ZeroMQ

/// Asks a running service for its `StatusReport` over the service's own socket: what
/// `ferry status` and every binary's `probe` subcommand (the compose healthcheck) use.
public enum StatusProbe {
    /// `security` and `serverKey`: for a socket that wants CURVE (the broker's control, a relay's).
    public static func ask(_ endpoint: String, context: Context, timeoutMilliseconds: Int = 3000,
                           security: TransportSecurity = .off, serverKey: [UInt8]? = nil) throws -> StatusReport {
        let socket = try context.socket(.dealer)
        defer { socket.close() }
        try socket.setIdentity("probe-\(UUID().uuidString.prefix(8))")
        try security.connect(socket, endpoint, serverKey: serverKey)
        try socket.send(try StatusQuery().frames())
        var poller = Poller()
        poller.add(socket)
        try poller.poll(timeoutMilliseconds: timeoutMilliseconds)
        guard let frames = try socket.receive(dontWait: true) else {
            throw ConfigurationError("no answer from \(endpoint) within \(timeoutMilliseconds) ms")
        }
        return try StatusReport.decode(frames: frames.map(\.data))
    }
}

/// Answers `status.query` for a service whose own sockets can't (PULL, XSUB/XPUB): a small
/// ROUTER the service's loop serves between its other work, so an answer means the loop runs.
public final class StatusResponder {
    let socket: Socket

    public init(context: Context, bind endpoint: String) throws {
        socket = try context.socket(.router)
        try socket.setMaxMessageSize(64 << 10)
        try socket.bind(endpoint)
    }

    public func answer(_ report: () -> StatusReport) {
        while let frames = try? socket.receive(dontWait: true) {
            guard frames.count == 4, (try? Envelope(frames: frames.dropFirst().map(\.data)).decode(StatusQuery.self)) != nil,
                  let reply = try? report().frames() else { continue }
            _ = try? socket.send([frames[0].data] + reply, dontWait: true)
        }
    }
}
