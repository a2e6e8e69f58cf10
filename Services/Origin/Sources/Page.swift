import FerryProtocol
import Hummingbird

/// `?after=<last key of the previous page>&limit=<n>` on the origin's lists: at most
/// `maxLimit` a page, so no answer loads a whole table.
struct Page {
    static let maxLimit = 1000
    let after: String?
    let limit: Int
    /// The answer to give instead when the query is out of bounds.
    let refusal: Response?

    init(_ request: Request) throws {
        after = request.uri.queryParameters.get("after").map { String($0) }
        let asked = request.uri.queryParameters.get("limit").map { Int(String($0)) }
        if let asked, asked == nil || !(1...Self.maxLimit).contains(asked!) {
            limit = 0
            refusal = try json(ErrorBody(reason: "bad-page", error: "limit must be 1-\(Self.maxLimit)"), status: .badRequest)
        } else {
            limit = (asked ?? nil) ?? Self.maxLimit
            refusal = nil
        }
    }
}
