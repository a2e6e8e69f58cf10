import DequeModule
import OrderedCollections
import FerryProtocol

/// Each content's swarm as the event stream shows it, for the status page: every device asking
/// for the content, whom it gets it from and through which relays, how much it holds, and how
/// much of what the swarm received came from the origin. A pure core: it takes an event and
/// updates itself; `LiveView` feeds it and serves what it shows.
///
/// Bytes are attributed as they are reported: a `transfer.progress` adds what arrived since the
/// last report to the origin or to peers by the source it names, and `transfer.completed`
/// replaces that estimate with the device's own exact figures.
struct SwarmView: Sendable {
    enum MemberState: String, Codable, Sendable {
        /// Asked; no source started yet.
        case asking
        case receiving
        case completed
        case failed
    }

    struct Member: Codable, Sendable, Equatable {
        var requestId: String
        var deviceId: String
        /// `origin`, or the device it gets the content from (the devices, joined by `+`, when
        /// several send a stripe each); empty until a source starts.
        var from: String
        /// The relays a peer source's packets cross.
        var via: [String]
        /// When several devices send at once: the device sending each stripe, in stripe order
        /// (empty until that stripe's session starts).
        var stripes: [String]?
        var receivedBytes: Double
        var totalBytes: Double
        var bytesFromOrigin: Double
        var bytesFromPeers: Double
        var state: MemberState
    }

    struct Swarm: Codable, Sendable, Equatable {
        var contentId: String
        var members: [Member]
        var bytesFromOrigin: Double
        var bytesFromPeers: Double
        var updatedAt: String
    }

    /// Newest first. Bounded, so a long-running origin's page stays small: the oldest swarm
    /// goes beyond `swarmsKept`, and a swarm lists its first `membersKept` devices.
    private(set) var swarms: [Swarm] = []
    private var contentOf: [String: String] = [:]
    /// Oldest first: the request forgotten first once `requestsKept` are remembered.
    private var requestOrder: Deque<String> = []
    static let swarmsKept = 10
    static let membersKept = 1000
    static let requestsKept = 10_000

    mutating func apply(_ event: FerryEvent) {
        guard let request = event.requestId else { return }
        let data = event.data
        if event.topic == EventTopic.requestReceived.rawValue {
            guard let content = data["contentId"]?.stringValue, let device = data["deviceId"]?.stringValue else { return }
            remember(request, content)
            update(content, at: event.time) { swarm in
                guard !swarm.members.contains(where: { $0.requestId == request }), swarm.members.count < Self.membersKept else { return false }
                swarm.members.append(Member(requestId: request, deviceId: device, from: "", via: [], stripes: nil, receivedBytes: 0,
                                            totalBytes: data["size"]?.numberValue ?? 0, bytesFromOrigin: 0, bytesFromPeers: 0,
                                            state: .asking))
                return true
            }
            return
        }
        guard let content = contentOf[request] ?? data["contentId"]?.stringValue else { return }
        update(content, at: event.time) { swarm in
            guard let index = swarm.members.firstIndex(where: { $0.requestId == request }) else { return false }
            var member = swarm.members[index]
            switch event.topic {
            case EventTopic.transferStarted.rawValue:
                let source = data["source"]?.stringValue ?? member.from
                let relays = Self.strings(data["relays"])
                if source != "origin", let stripe = data["stripe"], let index = stripe["index"]?.numberValue.map(Int.init),
                   let count = stripe["count"]?.numberValue.map(Int.init), (0..<count).contains(index), count <= Stripe.maxCount {
                    var senders = member.stripes?.count == count ? member.stripes ?? [] : Array(repeating: "", count: count)
                    senders[index] = source
                    member.stripes = senders
                    member.from = Array(OrderedSet(senders.filter { !$0.isEmpty }))
                        .joined(separator: "+")
                    member.via = member.via.filter { !relays.contains($0) } + relays
                } else {
                    member.stripes = nil
                    member.from = source
                    member.via = source == "origin" ? [] : relays
                }
                member.state = .receiving
            case EventTopic.transferProgress.rawValue:
                let received = data["receivedBytes"]?.numberValue ?? member.receivedBytes
                let arrived = max(0, received - member.receivedBytes)
                if data["source"]?.stringValue?.hasPrefix("origin") == true {
                    member.bytesFromOrigin += arrived
                } else {
                    member.bytesFromPeers += arrived
                }
                member.receivedBytes = received
                member.totalBytes = data["totalBytes"]?.numberValue ?? member.totalBytes
                member.state = .receiving
            case EventTopic.transferCompleted.rawValue:
                member.bytesFromOrigin = data["bytesFromOrigin"]?.numberValue ?? member.bytesFromOrigin
                member.bytesFromPeers = data["bytesFromPeers"]?.numberValue ?? member.bytesFromPeers
                member.totalBytes = data["size"]?.numberValue ?? member.totalBytes
                member.receivedBytes = member.totalBytes
                member.state = .completed
            case EventTopic.transferFailed.rawValue:
                member.state = .failed
            default:
                return false
            }
            guard member != swarm.members[index] else { return false }
            swarm.bytesFromOrigin += member.bytesFromOrigin - swarm.members[index].bytesFromOrigin
            swarm.bytesFromPeers += member.bytesFromPeers - swarm.members[index].bytesFromPeers
            swarm.members[index] = member
            return true
        }
    }

    /// `change` says whether it changed the swarm; a changed swarm moves to the front. The
    /// swarm is taken out of the list while it changes, so its members are never copied.
    private mutating func update(_ content: String, at time: String, _ change: (inout Swarm) -> Bool) {
        let index = swarms.firstIndex { $0.contentId == content }
        var swarm = index.map { swarms.remove(at: $0) }
            ?? Swarm(contentId: content, members: [], bytesFromOrigin: 0, bytesFromPeers: 0, updatedAt: time)
        guard change(&swarm), !swarm.members.isEmpty else {
            if let index { swarms.insert(swarm, at: index) }
            return
        }
        swarm.updatedAt = time
        swarms.insert(swarm, at: 0)
        if swarms.count > Self.swarmsKept { swarms.removeLast() }
    }

    private mutating func remember(_ request: String, _ content: String) {
        if contentOf.updateValue(content, forKey: request) == nil { requestOrder.append(request) }
        if requestOrder.count > Self.requestsKept {
            contentOf[requestOrder.removeFirst()] = nil
        }
    }

    private static func strings(_ value: JSONValue?) -> [String] {
        guard case .array(let values)? = value else { return [] }
        return values.compactMap(\.stringValue)
    }
}
