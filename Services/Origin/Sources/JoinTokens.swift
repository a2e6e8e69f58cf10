import FerryProtocol
import FerryTrust
import Foundation
import GRDB

/// The join tokens parties enrol with, kept beside the parties in the registry's store, so an
/// enrolment checks and spends its token in one transaction.
extension DeviceRegistry {
    func issue(_ request: JoinTokenRequest, by actor: Actor, now: Date = Date()) throws -> (token: IssuedJoinToken, entry: AuditEntry) {
        let token = JoinToken.make()
        return try queue.write { db in
            try db.execute(sql: """
                INSERT INTO join_tokens(token_id, secret_hash, kind, party_id, uses_left, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [token.id, token.secretHash, request.kind.rawValue, request.partyId?.rawValue, request.uses,
                                 request.expiresInSeconds.map { now.timeIntervalSince1970 + Double($0) }, Timestamp.format(now)])
            guard let info = try Self.joinToken(db, token.id) else { throw DatabaseError(message: "token \(token.id) vanished") }
            let entry = try AuditTrail.append(db, subject: info.tokenId, by: actor, EventData.TokenCreated(
                tokenId: info.tokenId, kind: info.kind.rawValue, partyId: info.partyId?.rawValue ?? "", uses: info.usesLeft, expiresAt: info.expiresAt))
            return (IssuedJoinToken(token: token.text, info: info), entry)
        }
    }

    public func joinToken(_ id: String) throws -> JoinTokenInfo? {
        try queue.read { db in try Self.joinToken(db, id) }
    }

    static func joinToken(_ db: Database, _ id: String) throws -> JoinTokenInfo? {
        try Row.fetchOne(db, sql: Self.tokenQuery + " WHERE t.token_id = ?", arguments: [id]).map(Self.tokenInfo)
    }

    /// One page, in the order they were made, after the token `after`.
    public func joinTokens(after: String?, limit: Int) throws -> [JoinTokenInfo] {
        try queue.read { db in
            try Row.fetchAll(db, sql: Self.tokenQuery + """
                 \(Page.clause("join_tokens", key: "token_id", alias: "t"))
                """, arguments: [after, limit]).map(Self.tokenInfo)
        }
    }

    /// Nil when no such token; revoking twice keeps the first time, and only the first is an
    /// entry in the audit trail. Parties it enrolled stay enrolled.
    func revokeToken(_ id: String, by actor: Actor) throws -> (token: JoinTokenInfo, entry: AuditEntry?)? {
        try queue.write { db in
            try db.execute(sql: "UPDATE join_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL", arguments: [Timestamp.now(), id])
            guard let info = try Self.joinToken(db, id) else { return nil }
            let entry = db.changesCount == 0 ? nil : try AuditTrail.append(db, subject: id, by: actor, EventData.TokenRevoked(tokenId: id))
            return (info, entry)
        }
    }

    /// What the origin found in a standing token's file at start.
    enum StandingToken: Equatable, Sendable {
        case kept(tokenId: String)
        case issued(tokenId: String, AuditEntry)
        /// The operator revoked it: it stays revoked across restarts, and no new one is made
        /// until the operator removes the file (a rotation, like `docker swarm join-token --rotate`).
        case revoked(tokenId: String)
    }

    /// The fleet's reusable token for `kind`, written to `file` (mode 0600) the first time, so
    /// replicas of a scaled service share it with no per-replica configuration.
    func standingToken(_ kind: PartyKind, file: URL) throws -> StandingToken {
        if let saved = StoredSecret.read(at: file), let token = JoinToken(parsing: saved),
           let info = try joinToken(token.id), info.kind == kind {
            return info.revokedAt == nil ? .kept(tokenId: info.tokenId) : .revoked(tokenId: info.tokenId)
        }
        let (issued, entry) = try issue(JoinTokenRequest(kind: kind), by: .origin)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: file)
        guard FileManager.default.createFile(atPath: file.path, contents: Data((issued.token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw TrustError.io("cannot write \(file.path)")
        }
        return .issued(tokenId: issued.info.tokenId, entry)
    }

    static let tokenQuery = """
        SELECT t.*, (SELECT COUNT(*) FROM devices d WHERE d.token_id = t.token_id) AS enrolled FROM join_tokens t
        """

    static func tokenInfo(_ row: Row) -> JoinTokenInfo {
        JoinTokenInfo(tokenId: row["token_id"], kind: PartyKind(rawValue: row["kind"]) ?? .device,
                      partyId: (row["party_id"] as String?).flatMap { try? DeviceID($0) }, usesLeft: row["uses_left"],
                      expiresAt: (row["expires_at"] as Double?).map { Timestamp.format(Date(timeIntervalSince1970: $0)) },
                      createdAt: row["created_at"], revokedAt: row["revoked_at"], enrolled: row["enrolled"])
    }
}
