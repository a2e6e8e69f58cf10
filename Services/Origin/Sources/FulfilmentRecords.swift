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
        // Summed in SQL from the stored bodies (no copy in columns: the body stays the one
        // definition of a fulfilment), so a long ledger isn't loaded to answer this.
        try queue.read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COUNT(*) AS n,
                       COALESCE(SUM(json_extract(CAST(body AS TEXT), '$.bytesFromPeers')), 0) AS peers,
                       COALESCE(SUM(json_extract(CAST(body AS TEXT), '$.bytesFromOrigin')), 0) AS origin
                FROM fulfilments
                """)
            return OriginStats(fulfilments: row?["n"] ?? 0, bytesFromPeers: UInt64(row?["peers"] as Int64? ?? 0),
                               bytesFromOrigin: UInt64(row?["origin"] as Int64? ?? 0))
        }
    }

    /// One page, in the order they were recorded, after the request `after`.
    public func page(after: String?, limit: Int) throws -> [Fulfilment] {
        try queue.read { db in
            try Data.fetchAll(db, sql: """
                SELECT body FROM fulfilments \(Page.clause("fulfilments", key: "request_id"))
                """, arguments: [after, limit]).map {
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
