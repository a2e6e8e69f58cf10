import FerryProtocol
import FerryTrust
import Foundation
import GRDB
import Hummingbird
import Metrics

/// The devices and relays enrolled at this origin, with their public keys and the join token
/// each enrolled with; the join tokens; and which devices may get which content (no list for a
/// content: every enrolled device may).
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
        migrator.registerMigration("v3-join-tokens") { db in
            try db.execute(sql: """
                CREATE TABLE join_tokens (token_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, kind TEXT NOT NULL, party_id TEXT,
                                          uses_left INTEGER, expires_at REAL, created_at TEXT NOT NULL, revoked_at TEXT);
                CREATE INDEX join_tokens_by_party ON join_tokens(party_id) WHERE party_id IS NOT NULL;
                ALTER TABLE devices ADD COLUMN token_id TEXT;
                """)
        }
        AuditTrail.migrate(&migrator)
        try migrator.migrate(queue)
    }

    public enum Enrolled: Equatable, Sendable {
        case new(EnrolledDevice, AuditEntry)
        case again
        case refused(EnrolmentRefusal)
    }

    /// Enrolling again with the same keys is harmless (a device retries until it hears back);
    /// other keys under a known id are refused, so a device id can't be taken over. A new party
    /// needs a join token that allows it: its kind, its id when the token names one, unused,
    /// unexpired, unrevoked; and an id that a token reserves or an allow list names only with a
    /// token naming that id. A revoked id or key never enrols again, whatever the token.
    /// `address`: where the enrolment came from, for the audit trail.
    func enrol(_ enrolment: DeviceEnrolment, from address: String?, now: Date = Date()) throws -> Enrolled {
        try queue.write { db in
            let id = enrolment.deviceId.rawValue
            if let row = try Row.fetchOne(db, sql: "SELECT signing_key, agreement_key, revoked_at FROM devices WHERE device_id = ?", arguments: [id]) {
                if (row["revoked_at"] as String?) != nil { return .refused(.deviceRevoked) }
                return row["signing_key"] == enrolment.signingKey && row["agreement_key"] == enrolment.agreementKey ? .again : .refused(.keysDiffer)
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM devices WHERE revoked_at IS NOT NULL AND (signing_key = ? OR agreement_key = ?)",
                                 arguments: [enrolment.signingKey, enrolment.agreementKey]) ?? false {
                return .refused(.keyRevoked)
            }
            // The agreement key is also the party's transport key: one party per key.
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM devices WHERE agreement_key = ?", arguments: [enrolment.agreementKey]) ?? false {
                return .refused(.keysDiffer)
            }
            guard let token = JoinToken(parsing: enrolment.token),
                  let row = try Row.fetchOne(db, sql: "SELECT * FROM join_tokens WHERE token_id = ?", arguments: [token.id]),
                  token.matches(storedHash: row["secret_hash"]) else { return .refused(.badToken) }
            if (row["revoked_at"] as String?) != nil { return .refused(.tokenRevoked) }
            if let expiry = row["expires_at"] as Double?, now.timeIntervalSince1970 >= expiry { return .refused(.tokenExpired) }
            if let left = row["uses_left"] as Int?, left <= 0 { return .refused(.tokenUsedUp) }
            let kind = PartyKind(rawValue: row["kind"]) ?? .device
            guard kind == enrolment.kind ?? .device else { return .refused(.tokenKind) }
            if let named = row["party_id"] as String? {
                guard named == id else { return .refused(.tokenId) }
            } else {
                let reserved = try Bool.fetchOne(db, sql: """
                    SELECT 1 FROM join_tokens WHERE party_id = ? AND revoked_at IS NULL
                    UNION SELECT 1 FROM access WHERE device_id = ?
                    """, arguments: [id, id]) ?? false
                if reserved { return .refused(.idReserved) }
            }
            try db.execute(sql: "INSERT INTO devices(device_id, signing_key, agreement_key, enrolled_at, kind, token_id) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [id, enrolment.signingKey, enrolment.agreementKey, Timestamp.now(), kind.rawValue, token.id])
            try db.execute(sql: "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE token_id = ? AND uses_left IS NOT NULL", arguments: [token.id])
            let entry = try AuditTrail.append(db, subject: id, by: .token(token.id, from: address),
                                              EventData.DeviceEnrolled(deviceId: id, kind: kind.rawValue, tokenId: token.id))
            guard let enrolled = try Self.device(db, id) else { throw DatabaseError(message: "device \(id) vanished") }
            return .new(enrolled, entry)
        }
    }

    public func device(_ id: String) throws -> EnrolledDevice? {
        try queue.read { db in try Self.device(db, id) }
    }

    static func device(_ db: Database, _ id: String) throws -> EnrolledDevice? {
        try Row.fetchOne(db, sql: "SELECT * FROM devices WHERE device_id = ?", arguments: [id]).flatMap(Self.device)
    }

    /// The unrevoked party whose X25519 (CURVE) key this is.
    public func party(agreementKey: String) throws -> EnrolledDevice? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM devices WHERE agreement_key = ? AND revoked_at IS NULL", arguments: [agreementKey])
                .flatMap(Self.device)
        }
    }

    /// One page, in enrolment order, after the party `after`.
    public func page(after: String?, limit: Int) throws -> [EnrolledDevice] {
        try queue.read { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM devices \(Page.clause("devices", key: "device_id"))
                """, arguments: [after, limit]).compactMap(Self.device)
        }
    }

    /// Nil when no such device; revoking twice keeps the first time, and only the first is an
    /// entry in the audit trail.
    func revoke(_ id: String, by actor: Actor) throws -> (device: EnrolledDevice, entry: AuditEntry?)? {
        try queue.write { db in
            try db.execute(sql: "UPDATE devices SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL", arguments: [Timestamp.now(), id])
            guard let device = try Self.device(db, id) else { return nil }
            let entry = db.changesCount == 0 ? nil : try AuditTrail.append(db, subject: id, by: actor,
                                                                             EventData.DeviceRevoked(deviceId: id, kind: device.kind.rawValue))
            return (device, entry)
        }
    }

    /// An entry for a change kept outside this store (content published or withdrawn).
    func record(subject: String, by actor: Actor, _ detail: some AuditDetail) throws -> AuditEntry {
        try queue.write { db in try AuditTrail.append(db, subject: subject, by: actor, detail) }
    }

    /// One page of the audit trail, oldest first, after the entry numbered `after`.
    func audit(after: String?, limit: Int) throws -> [AuditEntry] {
        try queue.read { db in try AuditTrail.page(db, after: after, limit: limit) }
    }

    public func restrict(_ content: ContentID, to devices: [DeviceID]) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM access WHERE content_id = ?", arguments: [content.hex])
            for device in devices {
                try db.execute(sql: "INSERT OR IGNORE INTO access(content_id, device_id) VALUES (?, ?)", arguments: [content.hex, device.rawValue])
            }
        }
    }

    /// The content that has an allow list: listed only to the operator.
    public func restrictedContent() throws -> Set<String> {
        try queue.read { db in Set(try String.fetchAll(db, sql: "SELECT DISTINCT content_id FROM access")) }
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
                              kind: PartyKind(rawValue: row["kind"] ?? "device") ?? .device, tokenId: row["token_id"])
    }
}

/// Who is asking the origin for content: the operator (bearer token), or an enrolled device
/// that signed the request (`DeviceRequestAuth`) and is entitled to the content.
struct CallerCheck: Sendable {
    let devices: DeviceRegistry
    let operatorCredential: StoredSecret
    let seen = SeenNonces(windowMilliseconds: DeviceRequestAuth.skewMilliseconds)

    enum Caller {
        case `operator`
        case device(EnrolledDevice)
        case refused(Response)
    }

    /// Nil when the request may go on; otherwise the answer to give. `asking`: the device the
    /// request speaks for, which must be the one that signed it.
    func refusal(_ request: Request, body: Data = Data(), for content: ContentID, asking: DeviceID? = nil) throws -> Response? {
        if case .refused(let response) = try caller(request, body: body, for: content, asking: asking) { return response }
        return nil
    }

    func caller(_ request: Request, body: Data = Data(), for content: ContentID, asking: DeviceID? = nil) throws -> Caller {
        if operatorCredential.admits(authorization: request.headers[.authorization]) { return .operator }
        let device: EnrolledDevice
        switch try party(request, body: body) {
        case .refused(let response): return .refused(response)
        case .operator: return .operator
        case .device(let signed): device = signed
        }
        // A relay carries sealed packets; it never gets content, manifests or keys.
        guard device.kind == .device else { return try Self.refuse(.forbidden, "not-a-device", "\(device.deviceId) is enrolled as a relay") }
        if let asking, asking != device.deviceId {
            return try Self.refuse(.forbidden, "wrong-device", "device \(device.deviceId) can't ask on behalf of \(asking)")
        }
        guard try devices.mayGet(device.deviceId, content) else {
            return try Self.refuse(.forbidden, "not-entitled", "device \(device.deviceId) may not get this content")
        }
        return .device(device)
    }

    /// The enrolled, unrevoked party (device or relay) that signed the request, whatever it
    /// asks for. `body`: the request's body, which the signature covers (empty for a GET).
    func party(_ request: Request, body: Data = Data()) throws -> Caller {
        guard let header = request.headers[.authorization], let claim = DeviceRequestAuth.parse(header) else {
            return try Self.refuse(.unauthorized, "device-auth", "needs Authorization: Ferry-Device id=…,ts=…,nonce=…,sig=… from an enrolled device")
        }
        guard let device = try devices.device(claim.deviceId) else {
            return try Self.refuse(.forbidden, "not-enrolled", "device \(claim.deviceId.prefix(80)) is not enrolled")
        }
        guard device.revokedAt == nil else { return try Self.refuse(.forbidden, "device-revoked", "device \(device.deviceId) was revoked") }
        let path = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        let now = SessionTokens.nowMilliseconds()
        do {
            try DeviceRequestAuth.verify(claim, signingKey: device.signingKey, method: request.method.rawValue, path: path,
                                         range: request.headers[.range], body: body, nowMilliseconds: now)
        } catch {
            return try Self.refuse(.unauthorized, "device-auth", "\(error)")
        }
        // Only a signature that checked out spends its nonce, so nobody burns a device's nonces.
        switch seen.admit(device: claim.deviceId, nonce: claim.nonce, timestamp: claim.timestamp, now: now) {
        case .fresh: return .device(device)
        case .replayed: return try Self.refuse(.unauthorized, "replayed", "this signed request was already taken; each is taken once")
        case .full: return try Self.refuse(.serviceUnavailable, "replay-window-full", "too many signed requests in the last \(DeviceRequestAuth.skewMilliseconds / 1000) s")
        }
    }

    static func refuse(_ status: HTTPResponse.Status, _ reason: String, _ error: String) throws -> Caller {
        Counter(label: "ferry_origin_refused_total", dimensions: [("reason", reason)]).increment()
        return .refused(try json(ErrorBody(reason: reason, error: error), status: status))
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
