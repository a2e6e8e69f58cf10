import ArgumentParser
import FerryService
import FerryTrust
import Foundation

/// What `ferry` needs to act as the operator at the origin: its URL and the operator token.
struct OperatorOptions: ParsableArguments {
    @Option(help: "The origin's base URL. Env: FERRY_ORIGIN_URL.")
    var origin = Env.string("FERRY_ORIGIN_URL", DefaultEndpoint.originURL)

    @Option(help: "The operator's bearer token. Env: FERRY_OPERATOR_TOKEN. Empty: the token file in the origin's data directory on this host (FERRY_ORIGIN_DATA, default ./run/origin).")
    var operatorToken = Env.string("FERRY_OPERATOR_TOKEN", "")

    /// The `Authorization` header to send, or none when no token is to be found (the origin
    /// then says what it needs).
    var authorization: [String: String] {
        let token = operatorToken.isEmpty
            ? StoredSecret.read(at: URL(fileURLWithPath: Env.string("FERRY_ORIGIN_DATA", "./run/origin")).appendingPathComponent(StoredSecret.operatorTokenFile))
            : operatorToken
        return token.map { ["Authorization": "Bearer \($0)"] } ?? [:]
    }
}
