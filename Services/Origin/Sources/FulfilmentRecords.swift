import FerryProtocol
import Foundation
import GRDB

/// The origin's own record of fulfilled requests, with where the bytes came from. Keyed by
/// request id: a redelivered fulfilment is acknowledged again but recorded once.
public final class FulfilmentRecords: Sendable {
    let queue: DatabaseQueue

    public init(path: String) throws {
        queue = try DatabaseQueue(path: path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE fulfilments (request_id TEXT PRIMARY KEY, body BLOB NOT NULL, received_at TEXT NOT NULL);
                """)
        }
        try migrator.migrate(queue)
    }

    /// Returns false when the request was already recorded.
    public func insert(_ fulfilment: Fulfilment) throws -> Bool {
        try queue.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO fulfilments(request_id, body, received_at) VALUES (?, ?, ?)",
                           arguments: [fulfilment.requestId.rawValue, try JSONCoding.encoder.encode(fulfilment), Timestamp.now()])
            return db.changesCount > 0
        }
    }

    public func stats() throws -> OriginStats {
        // Totals are computed from the decoded records rather than duplicated into columns, so
        // the body stays the one definition of a fulfilment.
        let records = try all()
        return OriginStats(fulfilments: records.count, bytesFromPeers: records.reduce(0) { $0 + $1.bytesFromPeers },
                           bytesFromOrigin: records.reduce(0) { $0 + $1.bytesFromOrigin })
    }

    public func all() throws -> [Fulfilment] {
        try queue.read { db in
            try Data.fetchAll(db, sql: "SELECT body FROM fulfilments ORDER BY received_at").map {
                try JSONCoding.decoder.decode(Fulfilment.self, from: $0)
            }
        }
    }

    public func find(_ requestId: RequestID) throws -> Fulfilment? {
        try queue.read { db in
            try Data.fetchOne(db, sql: "SELECT body FROM fulfilments WHERE request_id = ?", arguments: [requestId.rawValue]).map {
                try JSONCoding.decoder.decode(Fulfilment.self, from: $0)
            }
        }
    }
}
