import FerryTrust
import Foundation
import Logging
import ZeroMQ

/// How one process secures its sockets: CurveZMQ with the fleet's keys (docs/security.md), or
/// nothing when no keys are configured. Every socket a service binds or connects to another
/// Ferry process goes through `bind` or `connect` here, so turning security on is one setting.
public struct TransportSecurity: Sendable {
    public let fleet: FleetKeys?
    /// This process's own key pair: a service's from the fleet's keys, a device's or relay's
    /// its enrolled X25519 key.
    public let own: CurveKeyPair?
    /// Where enrolled keys are looked up (the origin), for sockets admitting `.parties`.
    public let registry: URL?
    /// Keys admitted to `.listed` sockets besides the fleet's.
    public let allowList: AllowList

    public static let off = TransportSecurity(fleet: nil, own: nil, registry: nil, allowList: AllowList())

    public init(fleet: FleetKeys?, own: CurveKeyPair?, registry: URL?, allowList: AllowList) {
        self.fleet = fleet
        self.own = own
        self.registry = registry
        self.allowList = allowList
    }

    public var isOn: Bool { fleet != nil }

    /// The operator's side (the `ferry` CLI), with the fleet's `operator` key; off without keys.
    public static func asOperator(keys directory: String) throws -> TransportSecurity {
        guard !directory.isEmpty else { return .off }
        let fleet = try FleetKeys(directory: directory)
        return TransportSecurity(fleet: fleet, own: try fleet.keyPair(for: .operator), registry: nil, allowList: AllowList())
    }

    /// The same fleet, presenting another key (a device's or relay's, once it has made it).
    public func presenting(_ keys: CurveKeyPair) -> TransportSecurity {
        TransportSecurity(fleet: fleet, own: keys, registry: registry, allowList: allowList)
    }

    /// The same, admitting `list` on `.listed` sockets.
    public func admitting(_ list: AllowList) -> TransportSecurity {
        TransportSecurity(fleet: fleet, own: own, registry: registry, allowList: list)
    }

    /// Starts the context's ZAP handler; nil when security is off. Start it before binding.
    public func gate(context: Context, service: String, logger: Logger) throws -> KeyGate? {
        guard let fleet else { return nil }
        let enrolled = try registry.map { try EnrolledKeys(registry: $0, originSigningKey: fleet.originSigningKey) }
        return try KeyGate(context: context, fleet: fleet, allowList: allowList, enrolled: enrolled, service: service, logger: logger)
    }

    /// Binds `socket` as the topology's row says: its message limit, and CURVE admitting its
    /// domain (plain when security is off, or the row is plain). `curveEvents`: whether the
    /// event stream's subscribers must use CURVE (`FERRY_EVENTS_OUT_CURVE`).
    public func bind(_ socket: Socket, _ endpoint: String, as row: BoundSocket, curveEvents: Bool = false) throws {
        try row.limit(socket)
        switch row.admission {
        case .curve(let domain): try bind(socket, endpoint, admitting: domain)
        case .plainUnlessCurveEvents where curveEvents: try bind(socket, endpoint, admitting: .listed)
        case .plain, .plainUnlessCurveEvents, .http: try socket.bind(endpoint)
        }
    }

    /// Binds `socket` as a CURVE server admitting `domain` (plain when security is off).
    private func bind(_ socket: Socket, _ endpoint: String, admitting domain: AdmissionDomain) throws {
        if isOn {
            guard let own else { throw ConfigurationError("transport security is on but this process has no key of its own") }
            try socket.makeCurveServer(own, domain: domain.rawValue)
        }
        try socket.bind(endpoint)
    }

    /// Connects `socket` to the fleet service `role` (plain when security is off). `watch`: for
    /// a device or relay, whose key may be refused until its enrolment is known.
    public func connect(_ socket: Socket, _ endpoint: String, to role: FleetRole, watch: RefusalWatch? = nil) throws {
        try connect(socket, endpoint, serverKey: fleet?.publicKeys[role], watch: watch)
    }

    /// Connects `socket` to a server with `serverKey` (a relay's, from the broker).
    public func connect(_ socket: Socket, _ endpoint: String, serverKey: [UInt8]?, watch: RefusalWatch? = nil) throws {
        if isOn {
            guard let own else { throw ConfigurationError("transport security is on but this process has no key of its own") }
            guard let serverKey, serverKey.count == 32 else {
                throw ConfigurationError("transport security is on but no key is known for the server at \(endpoint)")
            }
            try socket.makeCurveClient(own, serverKey: serverKey)
            if let watch { return try watch.connect(socket, endpoint) }
        }
        try socket.connect(endpoint)
    }
}

extension CommonOptions {
    /// This service's transport security: off when `FERRY_TRANSPORT_KEYS` is empty (logged as
    /// a warning), else the fleet's keys with `role`'s own secret key (nil for a device or
    /// relay, which present their own enrolled key).
    public func transport(role: FleetRole?, allowListFile: String = "", logger: Logger?) throws -> TransportSecurity {
        guard !transportKeys.isEmpty else {
            logger?.warning("transport security is off (no FERRY_TRANSPORT_KEYS): sockets are plain TCP, anyone who reaches them is let in")
            return .off
        }
        let fleet = try FleetKeys(directory: transportKeys)
        guard let registry = URL(string: keyRegistry), registry.scheme?.hasPrefix("http") == true else {
            throw ConfigurationError("FERRY_KEY_REGISTRY (--key-registry) must be an http(s) URL: \(keyRegistry)")
        }
        let list = allowListFile.isEmpty ? AllowList() : try AllowList(file: allowListFile)
        return TransportSecurity(fleet: fleet, own: try role.map { try fleet.keyPair(for: $0) }, registry: registry, allowList: list)
    }
}

extension DeviceKeys {
    /// The device's (or relay's) X25519 key as its CURVE key: the key it enrolled, so the
    /// services' gates can look it up.
    public var transportKeyPair: CurveKeyPair {
        try! CurveKeyPair(secretKey: Array(agreementSecretKey))
    }
}
