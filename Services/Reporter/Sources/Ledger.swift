import FerryProtocol
import Foundation
import GRDB

/// The reporter's durable state in SQLite: the broker's request records, completions waiting
/// for them, and fulfilments with their delivery state (the outbox). A fulfilment is keyed by
/// request id, so a request is recorded, and delivered, once. A waiting completion is keyed by
/// request and device: another device naming the same request id can neither replace nor
/// erase it.
public final class Ledger: Sendable {
    let pool: DatabasePool

    public init(path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        pool = try DatabasePool(path: path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE request_records (
                    request_id TEXT PRIMARY KEY, body BLOB NOT NULL, updated_at TEXT NOT NULL);
                CREATE TABLE pending_completions (
                    request_id TEXT PRIMARY KEY, body BLOB NOT NULL, received_at REAL NOT NULL);
                CREATE TABLE fulfilments (
                    request_id TEXT PRIMARY KEY, body BLOB NOT NULL, server TEXT NOT NULL, verification TEXT NOT NULL,
                    recorded_at TEXT NOT NULL, acknowledged_at TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at REAL NOT NULL, last_error TEXT);
                CREATE INDEX fulfilments_due ON fulfilments(next_attempt_at) WHERE acknowledged_at IS NULL;
                """)
        }
        migrator.registerMigration("v2-pending-by-device") { db in
            try db.execute(sql: """
                CREATE TABLE pending_by_device (
                    request_id TEXT NOT NULL, device_id TEXT NOT NULL, body BLOB NOT NULL, received_at REAL NOT NULL,
                    PRIMARY KEY (request_id, device_id));
                INSERT OR IGNORE INTO pending_by_device(request_id, device_id, body, received_at)
                    SELECT request_id, json_extract(CAST(body AS TEXT), '$.deviceId'), body, received_at FROM pending_completions;
                DROP TABLE pending_completions;
                ALTER TABLE pending_by_device RENAME TO pending_completions;
                """)
        }
        try migrator.migrate(pool)
    }

    static func json<T: Encodable>(_ value: T) throws -> Data { try JSONCoding.encoder.encode(value) }

    public func save(_ record: RequestRecord) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT INTO request_records(request_id, body, updated_at) VALUES (?, ?, ?) ON CONFLICT(request_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                           arguments: [record.requestId.rawValue, try Self.json(record), Timestamp.now()])
        }
    }

    public func record(for requestId: RequestID) throws -> RequestRecord? {
        try pool.read { db in
            guard let body = try Data.fetchOne(db, sql: "SELECT body FROM request_records WHERE request_id = ?", arguments: [requestId.rawValue]) else { return nil }
            return try JSONCoding.decoder.decode(RequestRecord.self, from: body)
        }
    }

    public func hasFulfilment(_ requestId: RequestID) throws -> Bool {
        try pool.read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM fulfilments WHERE request_id = ?", arguments: [requestId.rawValue]) ?? false
        }
    }

    /// Keeps the first completion a device sent for a request: a later one from the same device
    /// is its retry, and one from another device is stored beside it, never over it.
    public func park(_ completion: Completion, at time: Date = Date()) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO pending_completions(request_id, device_id, body, received_at) VALUES (?, ?, ?, ?)",
                           arguments: [completion.requestId.rawValue, completion.deviceId.rawValue, try Self.json(completion),
                                       time.timeIntervalSince1970])
        }
    }

    public func parked() throws -> [(Completion, Date)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT body, received_at FROM pending_completions ORDER BY received_at").map(Self.parkedRow)
        }
    }

    /// Every device's waiting completion for the request, oldest first.
    public func parkedCompletions(_ requestId: RequestID) throws -> [(Completion, Date)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT body, received_at FROM pending_completions WHERE request_id = ? ORDER BY received_at",
                             arguments: [requestId.rawValue]).map(Self.parkedRow)
        }
    }

    static func parkedRow(_ row: Row) throws -> (Completion, Date) {
        (try JSONCoding.decoder.decode(Completion.self, from: row["body"] as Data), Date(timeIntervalSince1970: row["received_at"]))
    }

    /// Forgets one device's waiting completion, and only that one.
    public func unpark(_ requestId: RequestID, device: DeviceID) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM pending_completions WHERE request_id = ? AND device_id = ?",
                           arguments: [requestId.rawValue, device.rawValue])
        }
    }

    /// Records a fulfilment and queues it for delivery; false if the request was already recorded.
    public func insert(_ fulfilment: Fulfilment, server: String) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO fulfilments(request_id, body, server, verification, recorded_at, next_attempt_at)
                VALUES (?, ?, ?, ?, ?, 0)
                """, arguments: [fulfilment.requestId.rawValue, try Self.json(fulfilment), server, fulfilment.verification.rawValue, fulfilment.recordedAt])
            let inserted = db.changesCount > 0
            try db.execute(sql: "DELETE FROM pending_completions WHERE request_id = ? AND device_id = ?",
                           arguments: [fulfilment.requestId.rawValue, fulfilment.deviceId.rawValue])
            return inserted
        }
    }

    public struct Delivery: Sendable {
        public var fulfilment: Fulfilment
        public var server: String
        public var attempts: Int
    }

    public func due(now: Date = Date(), limit: Int = 32) throws -> [Delivery] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT body, server, attempts FROM fulfilments
                WHERE acknowledged_at IS NULL AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?
                """, arguments: [now.timeIntervalSince1970, limit]).map { row in
                Delivery(fulfilment: try JSONCoding.decoder.decode(Fulfilment.self, from: row["body"] as Data),
                         server: row["server"], attempts: row["attempts"])
            }
        }
    }

    /// When the next unacknowledged delivery is due; nil when none waits.
    public func nextAttemptAt() throws -> Date? {
        try pool.read { db in
            try Double.fetchOne(db, sql: "SELECT MIN(next_attempt_at) FROM fulfilments WHERE acknowledged_at IS NULL")
                .map { Date(timeIntervalSince1970: $0) }
        }
    }

    public func acknowledged(_ requestId: RequestID, at time: Date = Date()) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE fulfilments SET acknowledged_at = ?, attempts = attempts + 1, last_error = NULL WHERE request_id = ?",
                           arguments: [Timestamp.format(time), requestId.rawValue])
        }
    }

    public func attemptFailed(_ requestId: RequestID, error: String, retryAt: Date) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE fulfilments SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE request_id = ?",
                           arguments: [error, retryAt.timeIntervalSince1970, requestId.rawValue])
        }
    }

    /// Forgets fulfilments acknowledged before `cutoff`, and the broker's records of them.
    /// Unacknowledged ones stay whatever their age: the server is still owed them.
    @discardableResult
    public func purge(acknowledgedBefore cutoff: Date) throws -> Int {
        let before = Timestamp.format(cutoff)
        return try pool.write { db in
            try db.execute(sql: """
                DELETE FROM request_records WHERE request_id IN
                    (SELECT request_id FROM fulfilments WHERE acknowledged_at IS NOT NULL AND acknowledged_at < ?)
                """, arguments: [before])
            try db.execute(sql: "DELETE FROM fulfilments WHERE acknowledged_at IS NOT NULL AND acknowledged_at < ?", arguments: [before])
            let purged = db.changesCount
            // Records of requests that never completed would otherwise stay forever.
            try db.execute(sql: """
                DELETE FROM request_records WHERE updated_at < ? AND request_id NOT IN (SELECT request_id FROM fulfilments)
                """, arguments: [before])
            return purged
        }
    }

    /// What the status probe reports, counted in SQL rather than by loading the ledger.
    public func counts() throws -> (fulfilments: Int, unacknowledged: Int, awaitingRecords: Int) {
        try pool.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, COALESCE(SUM(acknowledged_at IS NULL), 0) AS open FROM fulfilments")
            let parked = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM pending_completions") ?? 0
            return (row?["n"] ?? 0, row?["open"] ?? 0, parked)
        }
    }

    public struct Entry: Sendable, Codable {
        public var fulfilment: Fulfilment
        public var server: String
        public var acknowledgedAt: String?
        public var attempts: Int
    }

    public func entries() throws -> [Entry] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT body, server, acknowledged_at, attempts FROM fulfilments ORDER BY recorded_at").map { row in
                Entry(fulfilment: try JSONCoding.decoder.decode(Fulfilment.self, from: row["body"] as Data), server: row["server"],
                      acknowledgedAt: row["acknowledged_at"], attempts: row["attempts"])
            }
        }
    }
}
