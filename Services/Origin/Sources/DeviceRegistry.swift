import FerryProtocol
import FerryTrust
import Foundation
import GRDB
import Hummingbird
import Metrics

/// The devices enrolled at this origin, with their public keys, and which devices may get which
/// content (no list for a content: every enrolled device may).
public final class DeviceRegistry: Sendable {
    let queue: DatabaseQueue

    public init(path: String) throws {
        queue = try DatabaseQueue(path: path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE devices (device_id TEXT PRIMARY KEY, signing_key TEXT NOT NULL, agreement_key TEXT NOT NULL,
                                      enrolled_at TEXT NOT NULL, revoked_at TEXT);
                CREATE TABLE access (content_id TEXT NOT NULL, device_id TEXT NOT NULL, PRIMARY KEY (content_id, device_id));
                """)
        }
        migrator.registerMigration("v2-kind") { db in
            try db.execute(sql: """
                ALTER TABLE devices ADD COLUMN kind TEXT NOT NULL DEFAULT 'device';
                CREATE INDEX devices_by_agreement_key ON devices(agreement_key);
                """)
        }
        try migrator.migrate(queue)
    }

    public enum Enrolled: Equatable, Sendable {
        case new, again, revoked, keysDiffer
    }

    /// Enrolling again with the same keys is harmless (a device retries until it hears back);
    /// other keys under a known id are refused, so a device id can't be taken over.
    public func enrol(_ enrolment: DeviceEnrolment) throws -> Enrolled {
        try queue.write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT signing_key, agreement_key, revoked_at FROM devices WHERE device_id = ?",
                                          arguments: [enrolment.deviceId.rawValue]) {
                if (row["revoked_at"] as String?) != nil { return .revoked }
                return row["signing_key"] == enrolment.signingKey && row["agreement_key"] == enrolment.agreementKey ? .again : .keysDiffer
            }
            // The agreement key is also the party's transport key: one party per key.
            if try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM devices WHERE agreement_key = ?", arguments: [enrolment.agreementKey]) ?? 0 > 0 {
                return .keysDiffer
            }
            try db.execute(sql: "INSERT INTO devices(device_id, signing_key, agreement_key, enrolled_at, kind) VALUES (?, ?, ?, ?, ?)",
                           arguments: [enrolment.deviceId.rawValue, enrolment.signingKey, enrolment.agreementKey, Timestamp.now(),
                                       (enrolment.kind ?? .device).rawValue])
            return .new
        }
    }

    public func device(_ id: String) throws -> EnrolledDevice? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM devices WHERE device_id = ?", arguments: [id]).flatMap(Self.device)
        }
    }

    /// The unrevoked party whose X25519 (CURVE) key this is.
    public func party(agreementKey: String) throws -> EnrolledDevice? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM devices WHERE agreement_key = ? AND revoked_at IS NULL", arguments: [agreementKey])
                .flatMap(Self.device)
        }
    }

    public func all() throws -> [EnrolledDevice] {
        try queue.read { db in try Row.fetchAll(db, sql: "SELECT * FROM devices ORDER BY enrolled_at").compactMap(Self.device) }
    }

    /// Nil when no such device; revoking twice keeps the first time.
    public func revoke(_ id: String) throws -> EnrolledDevice? {
        try queue.write { db in
            try db.execute(sql: "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE device_id = ?", arguments: [Timestamp.now(), id])
            return try Row.fetchOne(db, sql: "SELECT * FROM devices WHERE device_id = ?", arguments: [id]).flatMap(Self.device)
        }
    }

    public func restrict(_ content: ContentID, to devices: [DeviceID]) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM access WHERE content_id = ?", arguments: [content.hex])
            for device in devices {
                try db.execute(sql: "INSERT OR IGNORE INTO access(content_id, device_id) VALUES (?, ?)", arguments: [content.hex, device.rawValue])
            }
        }
    }

    public func mayGet(_ device: DeviceID, _ content: ContentID) throws -> Bool {
        try queue.read { db in
            let listed = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM access WHERE content_id = ?", arguments: [content.hex]) ?? 0
            guard listed > 0 else { return true }
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM access WHERE content_id = ? AND device_id = ?",
                                    arguments: [content.hex, device.rawValue]) == 1
        }
    }

    static func device(_ row: Row) -> EnrolledDevice? {
        guard let id = try? DeviceID(row["device_id"] as String) else { return nil }
        return EnrolledDevice(deviceId: id, signingKey: row["signing_key"], agreementKey: row["agreement_key"],
                              enrolledAt: row["enrolled_at"], revokedAt: row["revoked_at"],
                              kind: PartyKind(rawValue: row["kind"] ?? "device") ?? .device)
    }
}

/// Who is asking the origin for content: the operator (bearer token), or an enrolled device
/// that signed the request (`DeviceRequestAuth`) and is entitled to the content.
struct CallerCheck: Sendable {
    let devices: DeviceRegistry
    let operatorCredential: StoredSecret

    enum Caller {
        case `operator`
        case device(EnrolledDevice)
        case refused(Response)
    }

    /// Nil when the request may go on; otherwise the answer to give. `asking`: the device the
    /// request speaks for, which must be the one that signed it.
    func refusal(_ request: Request, for content: ContentID, asking: DeviceID? = nil) throws -> Response? {
        if case .refused(let response) = try caller(request, for: content, asking: asking) { return response }
        return nil
    }

    func caller(_ request: Request, for content: ContentID, asking: DeviceID? = nil) throws -> Caller {
        let header = request.headers[.authorization]
        if operatorCredential.admits(authorization: header) { return .operator }
        func refuse(_ status: HTTPResponse.Status, _ reason: String, _ error: String) throws -> Caller {
            Counter(label: "ferry_origin_refused_total", dimensions: [("reason", reason)]).increment()
            return .refused(try json(ErrorBody(reason: reason, error: error), status: status))
        }
        guard let header, let claim = DeviceRequestAuth.parse(header) else {
            return try refuse(.unauthorized, "device-auth", "needs Authorization: Ferry-Device id=…,ts=…,sig=… from an enrolled device")
        }
        guard let device = try devices.device(claim.deviceId) else {
            return try refuse(.forbidden, "not-enrolled", "device \(claim.deviceId.prefix(80)) is not enrolled")
        }
        guard device.revokedAt == nil else { return try refuse(.forbidden, "device-revoked", "device \(device.deviceId) was revoked") }
        // A relay carries sealed packets; it never gets content, manifests or keys.
        guard device.kind == .device else { return try refuse(.forbidden, "not-a-device", "\(device.deviceId) is enrolled as a relay") }
        let path = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        do {
            try DeviceRequestAuth.verify(claim, signingKey: device.signingKey, method: request.method.rawValue, path: path,
                                         nowMilliseconds: SessionTokens.nowMilliseconds())
        } catch {
            return try refuse(.unauthorized, "device-auth", "\(error)")
        }
        if let asking, asking != device.deviceId {
            return try refuse(.forbidden, "wrong-device", "device \(device.deviceId) can't ask on behalf of \(asking)")
        }
        guard try devices.mayGet(device.deviceId, content) else {
            return try refuse(.forbidden, "not-entitled", "device \(device.deviceId) may not get this content")
        }
        return .device(device)
    }
}

/// The key each content travels under between devices: made when the content is first asked
/// for (or published) and kept, mode 0600, beside the store; never leaves the origin unwrapped.
final class ContentKeys: Sendable {
    let directory: URL
    private let lock = NSLock()

    init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    func key(for content: ContentID) throws -> ContentKey {
        lock.lock()
        defer { lock.unlock() }
        let url = directory.appendingPathComponent(content.hex)
        if let saved = try? Data(contentsOf: url) { return try ContentKey(raw: saved) }
        let key = ContentKey.random()
        guard FileManager.default.createFile(atPath: url.path, contents: key.raw, attributes: [.posixPermissions: 0o600]) else {
            throw TrustError.io("cannot write the content key to \(url.path)")
        }
        return key
    }

    func forget(_ content: ContentID) {
        lock.lock()
        defer { lock.unlock() }
        try? FileManager.default.removeItem(at: directory.appendingPathComponent(content.hex))
    }
}
