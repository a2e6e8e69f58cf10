import ArgumentParser
import FerryProtocol
import FerryService
import Foundation
import ZeroMQ

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the event stream, optionally only topics starting with the given prefixes.")

    @Argument(help: "Topic prefixes such as `request.` or `transfer.`; all topics when none.")
    var prefixes: [String] = []

    @Option(help: Topology.eventsOut.connectHelp("The event bus's subscriber endpoint."))
    var endpoint = Topology.eventsOut.connectEndpoint

    @Flag(help: "Print each event as one line of JSON.")
    var json = false

    @Option(help: "Exit after this many events.")
    var count: Int?

    @Option(help: "Exit after the first event with this topic.")
    var until: String?

    @Option(help: "Exit after this many seconds.")
    var timeout: Double?

    @Flag(help: "Connect with CURVE as the operator, for an event bus with FERRY_EVENTS_OUT_CURVE on (needs --transport-keys).")
    var curve = false

    @Option(help: Settings.transportKeys.help("The fleet's transport keys, for --curve."))
    var transportKeys = Settings.transportKeys.value

    func run() throws {
        let context = try Context()
        let socket = try context.socket(.sub)
        for prefix in prefixes.isEmpty ? [""] : prefixes { try socket.subscribe(prefix) }
        if curve && transportKeys.isEmpty { throw ValidationError("--curve needs --transport-keys (FERRY_TRANSPORT_KEYS)") }
        try TransportSecurity.asOperator(keys: curve ? transportKeys : "").connect(socket, endpoint, to: .eventbus)
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var seen = 0
        while deadline.map({ Date() < $0 }) ?? true {
            var poller = Poller()
            poller.add(socket)
            try poller.poll(timeoutMilliseconds: 250)
            while let frames = try socket.receive(dontWait: true) {
                let data = frames.map(\.data)
                if json {
                    print(String(decoding: data.last ?? Data(), as: UTF8.self))
                } else if let event = try? FerryEvent.decode(frames: data) {
                    print(Self.line(event))
                } else {
                    print("(undecodable event on topic \(frames.first?.string ?? "?"))")
                }
                fflush(nil)
                seen += 1
                if let count, seen >= count { return }
                if let until, frames.first?.string == until { return }
            }
        }
    }

    static func line(_ event: FerryEvent) -> String {
        let time = event.time.split(separator: "T").last.map { String($0.dropLast()) } ?? event.time
        var parts = [String(time.prefix(12)), event.topic.padding(toLength: 24, withPad: " ", startingAt: 0)]
        if let request = event.requestId { parts.append("req=\(request)") }
        if let session = event.sessionId { parts.append("session=\(session)") }
        parts.append("[\(event.publisher)#\(event.seq)]")
        parts.append(event.data.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        return parts.joined(separator: " ")
    }
}
