import ArgumentParser
import FerryProtocol
import FerryService
import FerryTrust
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What `ferry` needs to act as the operator at the origin: its URL and the operator token.
struct OperatorOptions: ParsableArguments {
    @Option(help: Topology.origin.connectHelp("The origin's base URL."))
    var origin = Topology.origin.connectEndpoint

    @Option(help: Settings.operatorToken.help("The operator's bearer token. Empty: the token file in the origin's data directory on this host (FERRY_ORIGIN_DATA, default ./run/origin)."))
    var operatorToken = Settings.operatorToken.value

    /// The `Authorization` header to send, or none when no token is to be found (the origin
    /// then says what it needs).
    var authorization: [String: String] {
        let token = operatorToken.isEmpty
            ? StoredSecret.read(at: URL(fileURLWithPath: Settings.originData.value).appendingPathComponent(StoredSecret.operatorTokenFile))
            : operatorToken
        return token.map { ["Authorization": "Bearer \($0)"] } ?? [:]
    }

    /// A request to the origin as the operator: `path` under the origin, with the token.
    func request(_ method: String, _ path: String, query: [URLQueryItem] = []) throws -> URLRequest {
        guard let base = URL(string: origin), var components = URLComponents(url: base.appendingPathComponent(path), resolvingAgainstBaseURL: false) else {
            throw ValidationError("origin \(origin) is not a URL")
        }
        if !query.isEmpty { components.queryItems = query }
        var request = URLRequest(url: components.url!, timeoutInterval: 10)
        request.httpMethod = method
        for (name, value) in authorization { request.setValue(value, forHTTPHeaderField: name) }
        return request
    }

    /// Every item of a paged list (`?after=&limit=`), page by page, after `start` if given;
    /// `key` is what `after` names.
    func all<Item: Decodable>(_ path: String, from start: String? = nil, key: (Item) -> String) throws -> [Item] {
        var items: [Item] = [], after = start
        while true {
            let query = [URLQueryItem(name: "limit", value: "1000")] + (after.map { [URLQueryItem(name: "after", value: $0)] } ?? [])
            let request = try request("GET", path, query: query)
            let page = try JSONCoding.decoder.decode([Item].self, from: try answer { try BlockingHTTP.send(request) }.body)
            items += page
            guard page.count == 1000, let last = page.last else { return items }
            after = key(last)
        }
    }

    /// The origin's answer, or, like every `ferry` command, a line saying why not and the exit
    /// status for it: unreachable (3) or refused (1, with the origin's reason).
    func answer(_ send: () throws -> HTTPResponse) throws -> HTTPResponse {
        let response: HTTPResponse
        do {
            response = try send()
        } catch {
            printError("ferry: cannot reach the origin: \(error)")
            throw ExitStatus.unreachable
        }
        guard response.ok else {
            let detail = (try? JSONCoding.decoder.decode(ErrorBody.self, from: response.body)).map { "\($0.reason): \($0.error)" }
            printError("ferry: the origin refused: \(detail ?? "status \(response.status)")")
            throw ExitStatus.failed
        }
        return response
    }
}
