import FerryTrust
import Foundation
import ZeroMQ

/// The services a fleet runs, each with a CURVE key of its own. `operator` is the key the
/// `ferry` CLI and the services' probes present when they ask a secured socket.
public enum FleetRole: String, CaseIterable, Sendable {
    case origin, intake, matcher, broker, reporter, eventbus, `operator`

    /// The files in `secret/` that only this role's host holds: its CURVE key, and for the
    /// origin and the reporter the Ed25519 key each signs with.
    public var secretFiles: [String] {
        switch self {
        case .origin: ["origin.key", FleetKeys.signingKeyName]
        case .reporter: ["reporter.key", FleetKeys.reporterSigningKeyName]
        default: ["\(rawValue).key"]
        }
    }
}

/// A fleet's transport keys, in one directory that `ferry keys fleet DIR` fills:
///
///     DIR/public/<role>.key        Z85 CURVE public key of each service
///     DIR/public/origin-signing.key  base64 Ed25519: the origin's manifest and answer key
///     DIR/public/reporter-signing.key  base64 Ed25519: the reporter signs fulfilment deliveries
///     DIR/secret/<role>.key        Z85 CURVE secret key (mode 0600)
///     DIR/secret/origin-signing.key
///     DIR/secret/reporter-signing.key
///
/// Devices and relays need only `public/` (a copy is enough): they make their own keys and
/// enrol them. Services also read their own file in `secret/`.
public struct FleetKeys: Sendable {
    public let directory: URL
    /// Every service's public key, by role.
    public let publicKeys: [FleetRole: [UInt8]]
    /// The key the origin signs manifests and `transport-keys` answers with.
    public let originSigningKey: String
    /// The key the reporter signs the fulfilments it delivers with; the origin checks it.
    public let reporterSigningKey: String

    public static let signingKeyName = "origin-signing.key"
    public static let reporterSigningKeyName = "reporter-signing.key"

    public init(directory: String) throws {
        self.directory = URL(fileURLWithPath: directory)
        var keys: [FleetRole: [UInt8]] = [:]
        for role in FleetRole.allCases {
            let url = self.directory.appendingPathComponent("public/\(role.rawValue).key")
            guard let text = try? String(contentsOf: url, encoding: .utf8) else {
                throw ConfigurationError("transport keys: \(url.path) is missing; make the fleet's keys with `ferry keys fleet \(directory)`")
            }
            guard let key = Z85.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), key.count == 32 else {
                throw ConfigurationError("transport keys: \(url.path) is not a Z85 CURVE public key")
            }
            keys[role] = key
        }
        publicKeys = keys
        let root = self.directory
        func signingKey(_ name: String) throws -> String {
            let url = root.appendingPathComponent("public/\(name)")
            guard let text = try? String(contentsOf: url, encoding: .utf8),
                  (try? VerifyingKey(base64: text.trimmingCharacters(in: .whitespacesAndNewlines))) != nil else {
                throw ConfigurationError("transport keys: \(url.path) is missing or not a base64 Ed25519 key; `ferry keys fleet \(directory)` makes what is missing")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        originSigningKey = try signingKey(Self.signingKeyName)
        reporterSigningKey = try signingKey(Self.reporterSigningKeyName)
    }

    /// The secret half of `role`'s key; only that service's host has it.
    public func keyPair(for role: FleetRole) throws -> CurveKeyPair {
        let url = directory.appendingPathComponent("secret/\(role.rawValue).key")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw ConfigurationError("transport keys: \(url.path) is missing: the \(role.rawValue) service needs its secret key")
        }
        guard let secret = Z85.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), secret.count == 32,
              let pair = try? CurveKeyPair(secretKey: secret), pair.publicKey == publicKeys[role] else {
            throw ConfigurationError("transport keys: \(url.path) is not the secret half of public/\(role.rawValue).key")
        }
        return pair
    }

    /// The services that sign with a fleet Ed25519 key.
    public enum Signer: Sendable {
        case origin, reporter
        var fileName: String { self == .origin ? FleetKeys.signingKeyName : FleetKeys.reporterSigningKeyName }
    }

    /// The secret half of `signer`'s key, only on its host. It must exist and match the public
    /// half the other services were given: never made here, since a new one would sign what
    /// nobody else can check.
    public func secretSigningKey(_ signer: Signer) throws -> SigningKey {
        let url = directory.appendingPathComponent("secret/\(signer.fileName)")
        let expected = signer == .origin ? originSigningKey : reporterSigningKey
        guard FileManager.default.fileExists(atPath: url.path), let key = try? SigningKey.loadOrCreate(at: url), key.publicKey == expected else {
            throw ConfigurationError("transport keys: \(url.path) is missing or not the secret half of public/\(signer.fileName)")
        }
        return key
    }

    /// The role whose key this is, if it is one of the fleet's.
    public func role(of key: [UInt8]) -> FleetRole? {
        publicKeys.first { $0.value == key }?.key
    }

    /// Makes whatever keys `directory` lacks and keeps those it has, so running it again (a
    /// compose start) changes nothing. Returns the roles made.
    @discardableResult
    public static func make(at directory: String) throws -> [String] {
        let root = URL(fileURLWithPath: directory)
        let publicDir = root.appendingPathComponent("public"), secretDir = root.appendingPathComponent("secret")
        try FileManager.default.createDirectory(at: publicDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: secretDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        var made: [String] = []
        for role in FleetRole.allCases {
            let publicURL = publicDir.appendingPathComponent("\(role.rawValue).key")
            let secretURL = secretDir.appendingPathComponent("\(role.rawValue).key")
            if let text = try? String(contentsOf: secretURL, encoding: .utf8) {
                // Kept; its public half is written again in case it went missing.
                guard let secret = Z85.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), secret.count == 32 else {
                    throw ConfigurationError("\(secretURL.path) is not a Z85 CURVE secret key")
                }
                try write(Z85.encode(try CurveKeyPair(secretKey: secret).publicKey), to: publicURL, mode: 0o644)
                continue
            }
            let pair = try CurveKeyPair.generate()
            try write(Z85.encode(pair.secretKey), to: secretURL, mode: 0o600)
            try write(Z85.encode(pair.publicKey), to: publicURL, mode: 0o644)
            made.append(role.rawValue)
        }
        for name in [signingKeyName, reporterSigningKeyName] {
            let signingSecret = secretDir.appendingPathComponent(name)
            if !FileManager.default.fileExists(atPath: signingSecret.path) { made.append(String(name.dropLast(".key".count))) }
            let signing = try SigningKey.loadOrCreate(at: signingSecret)
            try write(signing.publicKey, to: publicDir.appendingPathComponent(name), mode: 0o644)
        }
        return made
    }

    /// Copies the keys out for hosts that each get only their share: `out/public/` every
    /// public half, for every service, device and relay; `out/<role>/` that role's
    /// `secretFiles`, for its host to use as its `secret/` beside its own `public/`. Files
    /// there are replaced, so handing out again after a key changed hands out the new one.
    public func handOut(to out: String) throws {
        let root = URL(fileURLWithPath: out)
        let publicDir = root.appendingPathComponent("public")
        try FileManager.default.createDirectory(at: publicDir, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("public").path).sorted() {
            let text = try String(contentsOf: directory.appendingPathComponent("public/\(name)"), encoding: .utf8)
            try Self.write(text.trimmingCharacters(in: .whitespacesAndNewlines), to: publicDir.appendingPathComponent(name), mode: 0o644)
        }
        for role in FleetRole.allCases {
            let share = root.appendingPathComponent(role.rawValue)
            try FileManager.default.createDirectory(at: share, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for name in role.secretFiles {
                let text = try String(contentsOf: directory.appendingPathComponent("secret/\(name)"), encoding: .utf8)
                try Self.write(text.trimmingCharacters(in: .whitespacesAndNewlines), to: share.appendingPathComponent(name), mode: 0o600)
            }
        }
    }

    private static func write(_ text: String, to url: URL, mode: Int) throws {
        try? FileManager.default.removeItem(at: url)
        guard FileManager.default.createFile(atPath: url.path, contents: Data((text + "\n").utf8), attributes: [.posixPermissions: mode]) else {
            throw ConfigurationError("cannot write \(url.path)")
        }
    }
}

/// Keys let in beyond the fleet's own, one per line: `<Z85 public key> <name>`; a line that
/// starts with `#` is a comment.
/// Intake reads one for servers outside Ferry that push requests; the event bus for subscribers.
public struct AllowList: Sendable {
    public let names: [[UInt8]: String]

    public init(names: [[UInt8]: String] = [:]) { self.names = names }

    public init(file: String) throws {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ConfigurationError("allow list \(file) cannot be read")
        }
        var names: [[UInt8]: String] = [:]
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            // `#` is a Z85 digit, so only a line that starts with it is a comment.
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = fields.first, !first.hasPrefix("#") else { continue }
            guard let key = Z85.decode(first), key.count == 32 else {
                throw ConfigurationError("allow list \(file), line \(number + 1): \(first) is not a Z85 CURVE public key")
            }
            names[key] = fields.count > 1 ? fields[1...].joined(separator: " ") : first
        }
        self.names = names
    }
}
