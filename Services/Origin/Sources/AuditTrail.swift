import FerryProtocol
import Foundation
import GRDB

/// Who asked for a change to the fleet: the operator, a join token (enrolling), or the origin
/// itself; and from which address.
struct Actor: Sendable {
    let name: String
    let address: String?

    static func `operator`(from address: String?) -> Actor { Actor(name: "operator", address: address) }
    static func token(_ id: String, from address: String?) -> Actor { Actor(name: "token:\(id)", address: address) }
    static let origin = Actor(name: "origin", address: nil)
}

/// Every change to who may take part and what they may get: enrolments, revocations, join
/// tokens made and revoked, content published and withdrawn. Kept in the registry's store, so
/// an enrolment, a revocation or a token is written in the same transaction as its entry and
/// none happens without one. Entries are never changed or removed.
enum AuditTrail {
    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4-audit") { db in
            try db.execute(sql: """
                CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, action TEXT NOT NULL,
                                    subject TEXT NOT NULL, actor TEXT NOT NULL, address TEXT, detail TEXT NOT NULL);
                """)
        }
    }

    /// Appends an entry inside the caller's transaction: its action is the detail's topic.
    @discardableResult
    static func append<Detail: AuditDetail>(_ db: Database, subject: String, by actor: Actor, _ typed: Detail) throws -> AuditEntry {
        guard let action = AuditAction(rawValue: Detail.topic.rawValue) else { throw DatabaseError(message: "\(Detail.topic) is not audited") }
        let detail = typed.fields
        let at = Timestamp.now()
        let encoded = String(decoding: try JSONCoding.encoder.encode(detail), as: UTF8.self)
        try db.execute(sql: "INSERT INTO audit(at, action, subject, actor, address, detail) VALUES (?, ?, ?, ?, ?, ?)",
                       arguments: [at, action.rawValue, subject, actor.name, actor.address, encoded])
        return AuditEntry(seq: db.lastInsertedRowID, at: at, action: action, subject: subject, actor: actor.name,
                          address: actor.address, detail: detail)
    }

    /// One page, oldest first, after the entry numbered `after`.
    static func page(_ db: Database, after: String?, limit: Int) throws -> [AuditEntry] {
        try Row.fetchAll(db, sql: "SELECT * FROM audit WHERE seq > COALESCE(CAST(?1 AS INTEGER), 0) ORDER BY seq LIMIT ?2",
                         arguments: [after, limit]).compactMap { row in
            guard let action = AuditAction(rawValue: row["action"]) else { return nil }
            let detail = (try? JSONCoding.decoder.decode([String: JSONValue].self, from: Data((row["detail"] as String).utf8))) ?? [:]
            return AuditEntry(seq: row["seq"], at: row["at"], action: action, subject: row["subject"], actor: row["actor"],
                              address: row["address"], detail: detail)
        }
    }
}
