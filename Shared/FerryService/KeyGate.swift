import Foundation
import Logging
import Metrics
import Synchronization
import ZeroMQ

/// Which clients a secured socket lets in; set on the socket as its ZAP domain.
public enum AdmissionDomain: String, Sendable {
    /// The fleet's own services only (the pipeline between them).
    case fleet
    /// The fleet, plus enrolled devices and relays (broker control, holdings, reporter,
    /// relays' links, the event bus's publisher side).
    case parties
    /// The fleet, plus the keys in an allow list (intake's servers, the event stream's subscribers).
    case listed
}

/// A client a `KeyGate` turned away, for the service to publish as `transport.refused`.
public struct TransportRefusal: Sendable {
    public var domain: String
    public var address: String
    public var key: String
    public var reason: String
}

/// The ZAP handler (RFC 27) of one context: libzmq asks it about every client that completes a
/// CURVE handshake with a server socket of that context, and it answers from the fleet's keys,
/// an allow list and the origin's registry. Admitted clients carry a `User-Id` (`fleet:broker`,
/// `device:ID`, `relay:ID`, `listed:NAME`) and a `Ferry-Key` property (base64 key) on every
/// message, so a service can tie what a peer claims to the key it proved.
///
/// It must be bound before any server socket of the context: with no handler libzmq lets
/// every CURVE client in.
public final class KeyGate: Sendable {
    private let stop = StopSignal()
    private let finished = DispatchSemaphore(value: 0)
    private let refusals = Shelf<[TransportRefusal]>([])
    private let enrolled: EnrolledKeys?
    static let reportInterval: Duration = .seconds(10)

    public init(context: Context, fleet: FleetKeys, allowList: AllowList, enrolled: EnrolledKeys?, service: String, logger: Logger) throws {
        self.enrolled = enrolled
        let ready = DispatchSemaphore(value: 0)
        let failure = Shelf<Error?>(nil)
        let stop = self.stop, finished = self.finished, refusals = self.refusals
        let thread = Thread {
            defer { finished.signal() }
            let socket: Socket
            do {
                socket = try context.socket(.rep)
                try socket.bind("inproc://zeromq.zap.01")
            } catch {
                failure.withLock { $0 = error }
                ready.signal()
                return
            }
            ready.signal()
            defer { socket.close() }
            // A refused client retries every 100 ms or so: every refusal is counted, but each
            // key is logged and published once per interval, not ten times a second.
            var reported: [String: ContinuousClock.Instant] = [:]
            while !stop.isRequested {
                var poller = Poller()
                poller.add(socket)
                guard (try? poller.poll(timeoutMilliseconds: 200)) != nil else { continue }
                while let frames = try? socket.receive(dontWait: true) {
                    let request = frames.map(\.bytes)
                    let reply = Self.answer(request, fleet: fleet, allowList: allowList, enrolled: enrolled) { refusal in
                        Counter(label: "ferry_transport_refused_total", dimensions: [("domain", refusal.domain)]).increment()
                        let now = ContinuousClock.now, which = refusal.domain + refusal.key
                        if let last = reported[which], now - last < Self.reportInterval { return }
                        if reported.count > 10_000 { reported.removeAll() }
                        reported[which] = now
                        logger.warning("refused a transport key", metadata: ["domain": "\(refusal.domain)", "address": "\(refusal.address)",
                                                                             "key": "\(refusal.key)", "reason": "\(refusal.reason)"])
                        refusals.withLock { if $0.count < 10_000 { $0.append(refusal) } }
                    }
                    _ = try? socket.send(reply.map { Data($0) })
                }
            }
        }
        thread.name = "\(service)-zap"
        thread.start()
        ready.wait()
        if let error = failure.withLock({ $0 }) {
            finished.wait()
            throw error
        }
    }

    /// Refusals since the last call, oldest first.
    public func takeRefusals() -> [TransportRefusal] {
        refusals.withLock { taken in defer { taken = [] }; return taken }
    }

    /// A revoked party's key is looked up afresh on its next connection.
    public func forget(party id: String) { enrolled?.forget(id: id) }

    /// Stops the handler; call once the context's server sockets are closed.
    public func close() {
        guard !stop.isRequested else { return }
        stop.request()
        finished.wait()
    }

    deinit { close() }

    /// The reply to one ZAP request: version, request id, domain, address, routing id,
    /// mechanism, then the mechanism's credentials (for CURVE, the client's public key).
    static func answer(_ request: [[UInt8]], fleet: FleetKeys, allowList: AllowList, enrolled: EnrolledKeys?,
                       refused: (TransportRefusal) -> Void) -> [[UInt8]] {
        func reply(_ id: [UInt8], _ code: String, _ text: String, user: String = "", metadata: [UInt8] = []) -> [[UInt8]] {
            [Array("1.0".utf8), id, Array(code.utf8), Array(text.utf8), Array(user.utf8), metadata]
        }
        guard request.count >= 6, String(decoding: request[0], as: UTF8.self) == "1.0" else {
            return reply(request.count > 1 ? request[1] : [], "500", "malformed ZAP request")
        }
        let id = request[1], domain = String(decoding: request[2], as: UTF8.self), address = String(decoding: request[3], as: UTF8.self)
        let mechanism = String(decoding: request[5], as: UTF8.self)
        guard mechanism == "CURVE", request.count >= 7, request[6].count == 32 else {
            refused(TransportRefusal(domain: domain, address: address, key: "", reason: "mechanism \(mechanism) is not CURVE"))
            return reply(id, "400", "CURVE only")
        }
        let key = request[6]
        let keyText = Data(key).base64EncodedString()
        var peer: TransportPeer?
        let reason = AdmissionDomain(rawValue: domain) == nil ? "unknown domain \(domain)" : "key not admitted to \(domain)"
        if let role = fleet.role(of: key) {
            peer = .fleet(role.rawValue)
        } else if domain == AdmissionDomain.listed.rawValue, let name = allowList.names[key] {
            peer = .listed(name)
        } else if domain == AdmissionDomain.parties.rawValue, let party = enrolled?.party(for: key, from: address) {
            peer = party.kind == .device ? .device(party.id) : .relay(party.id)
        }
        guard let peer else {
            refused(TransportRefusal(domain: domain, address: address, key: keyText, reason: reason))
            return reply(id, "400", reason)
        }
        return reply(id, "200", "OK", user: peer.userId, metadata: metadataFrame(["Ferry-Key": keyText]))
    }

    /// ZMTP metadata: name length (1 byte), name, value length (4 bytes, network order), value.
    static func metadataFrame(_ properties: [String: String]) -> [UInt8] {
        var frame: [UInt8] = []
        for (name, value) in properties.sorted(by: { $0.key < $1.key }) {
            frame.append(UInt8(name.utf8.count))
            frame += Array(name.utf8)
            let count = UInt32(value.utf8.count).bigEndian
            frame += withUnsafeBytes(of: count) { Array($0) }
            frame += Array(value.utf8)
        }
        return frame
    }
}

/// A value behind a lock that closures on other threads can hold (a `Mutex` can't be captured).
final class Shelf<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { value.withLock { body(&$0) } }
}

/// Who a secured socket's peer is, as its key gate said in the connection's `User-Id`
/// (`fleet:ROLE`, `device:ID`, `relay:ID`, `listed:NAME`): written by `KeyGate`, read here only.
public enum TransportPeer: Equatable, Sendable, CustomStringConvertible {
    case fleet(String), device(String), relay(String), listed(String)

    public init?(userId: String) {
        let parts = userId.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        switch parts[0] {
        case "fleet": self = .fleet(parts[1])
        case "device": self = .device(parts[1])
        case "relay": self = .relay(parts[1])
        case "listed": self = .listed(parts[1])
        default: return nil
        }
    }

    public var userId: String {
        switch self {
        case .fleet(let role): "fleet:\(role)"
        case .device(let id): "device:\(id)"
        case .relay(let id): "relay:\(id)"
        case .listed(let name): "listed:\(name)"
        }
    }

    public var description: String { userId }

    /// A device's or relay's id; nil for a fleet service or a listed outsider.
    public var party: String? {
        switch self {
        case .device(let id), .relay(let id): id
        case .fleet, .listed: nil
        }
    }
}

extension Message {
    /// Who sent this, as the key gate admitted them; nil on a plain socket.
    public var peer: TransportPeer? { property("User-Id").flatMap(TransportPeer.init(userId:)) }
}
