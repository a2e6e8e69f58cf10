import FerryProtocol
import Hummingbird

/// `?after=<last key of the previous page>&limit=<n>` on the origin's lists: at most
/// `maxLimit` a page, so no answer loads a whole table.
struct Page {
    static let maxLimit = 1000
    let after: String?
    let limit: Int

    /// The page a request asks for; nil when its `limit` is not a number in 1...`maxLimit`.
    init?(_ request: Request) {
        after = request.uri.queryParameters.get("after").map { String($0) }
        guard let asked = request.uri.queryParameters.get("limit") else {
            limit = Self.maxLimit
            return
        }
        guard let number = Int(String(asked)), (1...Self.maxLimit).contains(number) else { return nil }
        limit = number
    }

    /// The answer to a request whose `limit` is out of bounds.
    static func refusal() throws -> Response {
        try json(ErrorBody(reason: "bad-page", error: "limit must be 1-\(maxLimit)"), status: .badRequest)
    }

    /// The end of a query for one page of `table`, in insertion order, after the row whose
    /// `key` is `?1`, at most `?2` rows. `alias`: the name `table` has in the query, if another.
    static func clause(_ table: String, key: String, alias: String? = nil) -> String {
        let rows = alias ?? table
        return "WHERE (?1 IS NULL OR \(rows).rowid > (SELECT rowid FROM \(table) WHERE \(key) = ?1)) ORDER BY \(rows).rowid LIMIT ?2"
    }
}
