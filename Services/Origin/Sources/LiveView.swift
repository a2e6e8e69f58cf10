import FerryProtocol
import FerryService
import Foundation
import Logging
import Synchronization
import ZeroMQ

/// What the status page shows, kept current from the event stream: each content's swarm,
/// transfers in progress, relays and their load, the offload ratio over time, and the latest
/// events. Bounded: old swarms, transfers, points and events fall off.
public final class LiveView: Sendable {
    struct Transfer: Codable, Sendable {
        var requestId: String
        var deviceId: String
        var source: String
        var receivedBytes: Double
        var totalBytes: Double
        var state: String
        var updatedAt: String
    }

    struct Relay: Codable, Sendable {
        var relayId: String
        var endpoint: String
        /// The device a device-run relay forwards for; empty for a fleet relay.
        var forwardsFor = ""
        var sessions: Int
        var state: String
    }

    struct Point: Codable, Sendable {
        var time: String
        var bytesFromPeers: Double
        var bytesFromOrigin: Double
    }

    struct Line: Codable, Sendable {
        var time: String
        var topic: String
        var publisher: String
        var requestId: String?
    }

    struct Snapshot: Codable, Sendable {
        var swarms: [SwarmView.Swarm] = []
        var transfers: [Transfer] = []
        var relays: [Relay] = []
        var offload: [Point] = []
        var events: [Line] = []
    }

    private let state = Mutex((view: Snapshot(), swarms: SwarmView()))

    public init() {}

    /// The picture as JSON, for `/v1/live`.
    func snapshot() -> Data {
        let view = state.withLock { state in
            var view = state.view
            view.swarms = state.swarms.swarms
            return view
        }
        return (try? JSONCoding.encoder.encode(view)) ?? Data("{}".utf8)
    }

    func apply(_ event: FerryEvent) {
        state.withLock { state in
            state.swarms.apply(event)
            apply(event, to: &state.view)
        }
    }

    private func apply(_ event: FerryEvent, to view: inout Snapshot) {
        view.events.insert(Line(time: event.time, topic: event.topic, publisher: event.publisher, requestId: event.requestId), at: 0)
        if view.events.count > 30 { view.events.removeLast() }
        let data = event.data
        switch event.topic {
        case EventTopic.transferStarted.rawValue, EventTopic.transferProgress.rawValue, EventTopic.transferCompleted.rawValue,
             EventTopic.transferFailed.rawValue:
            guard let request = event.requestId else { return }
            var transfer = view.transfers.first { $0.requestId == request }
                ?? Transfer(requestId: request, deviceId: data["deviceId"]?.stringValue ?? "?", source: "", receivedBytes: 0,
                            totalBytes: 0, state: "running", updatedAt: event.time)
            if let source = data["source"]?.stringValue { transfer.source = source }
            if let received = data["receivedBytes"]?.numberValue { transfer.receivedBytes = received }
            if let total = data["totalBytes"]?.numberValue ?? data["size"]?.numberValue { transfer.totalBytes = total }
            if event.topic == EventTopic.transferCompleted.rawValue {
                transfer.state = "completed"
                transfer.receivedBytes = transfer.totalBytes
            } else if event.topic == EventTopic.transferFailed.rawValue {
                transfer.state = "failed"
            }
            transfer.updatedAt = event.time
            view.transfers.removeAll { $0.requestId == request }
            view.transfers.insert(transfer, at: 0)
            if view.transfers.count > 20 { view.transfers.removeLast() }
        case EventTopic.relayJoined.rawValue, EventTopic.relayDraining.rawValue, EventTopic.relayLost.rawValue:
            guard let id = data["relayId"]?.stringValue else { return }
            Self.update(relay: id, in: &view) { relay in
                if let endpoint = data["endpoint"]?.stringValue { relay.endpoint = endpoint }
                if event.topic == EventTopic.relayJoined.rawValue { relay.forwardsFor = data["forwardsFor"]?.stringValue ?? "" }
                relay.state = event.topic == EventTopic.relayJoined.rawValue ? "up" : event.topic == EventTopic.relayDraining.rawValue ? "draining" : "lost"
            }
        case EventTopic.linkSpawned.rawValue, EventTopic.linkClosed.rawValue:
            guard data["role"]?.stringValue == "relay", let id = data["relayId"]?.stringValue else { return }
            Self.update(relay: id, in: &view) { $0.sessions = max(0, $0.sessions + (event.topic == EventTopic.linkSpawned.rawValue ? 1 : -1)) }
        case EventTopic.sessionBrokered.rawValue:
            // Also names the relay's endpoint, for a relay that joined before the page's feed did.
            guard case .array(let ids)? = data["relays"], let id = ids.first?.stringValue,
                  let endpoint = data["relayEndpoint"]?.stringValue else { return }
            Self.update(relay: id, in: &view) { $0.endpoint = endpoint }
        case EventTopic.fulfilmentRecorded.rawValue:
            let last = view.offload.last
            view.offload.append(Point(time: event.time,
                                      bytesFromPeers: (last?.bytesFromPeers ?? 0) + (data["bytesFromPeers"]?.numberValue ?? 0),
                                      bytesFromOrigin: (last?.bytesFromOrigin ?? 0) + (data["bytesFromOrigin"]?.numberValue ?? 0)))
            if view.offload.count > 200 { view.offload.removeFirst() }
        default:
            break
        }
    }

    /// A relay's row changed (made if the view hasn't seen it yet) goes to the end of the list.
    private static func update(relay id: String, in view: inout Snapshot, _ change: (inout Relay) -> Void) {
        var relay = view.relays.first { $0.relayId == id } ?? Relay(relayId: id, endpoint: "", sessions: 0, state: "up")
        change(&relay)
        view.relays.removeAll { $0.relayId == id }
        view.relays.append(relay)
    }

    /// Reads the event stream into the view on its own thread, like every ZeroMQ loop.
    public func service(eventsOut: String, security: TransportSecurity, logger: Logger) -> LoopService {
        LoopService(name: "origin-live") { [self] stop in
            let context = try Context()
            let socket = try context.socket(.sub)
            for topic in ["transfer.", "relay.", "link.", "fulfilment.", "session.", "request.", "match."] { try socket.subscribe(topic) }
            try security.connect(socket, eventsOut, to: .eventbus)
            while !stop.isRequested {
                var poller = Poller()
                poller.add(socket)
                try poller.poll(timeoutMilliseconds: 200)
                while let frames = try socket.receive(dontWait: true) {
                    if let event = try? FerryEvent.decode(frames: frames.map(\.data)) { apply(event) }
                }
            }
        }
    }
}
