import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

public struct HTTPResponse: Sendable {
    public var status: Int
    public var body: Data
    public var ok: Bool { (200..<300).contains(status) }
}

public struct HTTPError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// HTTP for code running on a loop thread or a worker thread (never the cooperative pool,
/// which this would block). URLSession is in the toolchain, so no extra package is built.
public enum BlockingHTTP {
    private final class Outcome: @unchecked Sendable {
        var response: HTTPResponse?
        var error: Error?
    }

    public typealias Completion = @Sendable (Data?, URLResponse?, Error?) -> Void

    /// Starts a task made by `task` and waits for its completion handler.
    private static func wait(for request: URLRequest, _ task: (@escaping Completion) -> URLSessionTask) throws -> HTTPResponse {
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        task { data, response, error in
            if let error {
                outcome.error = error
            } else {
                outcome.response = HTTPResponse(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: data ?? Data())
            }
            done.signal()
        }.resume()
        done.wait()
        if let error = outcome.error {
            throw HTTPError("\(request.httpMethod ?? "GET") \(request.url?.absoluteString ?? "?"): \(error.localizedDescription)")
        }
        return outcome.response!
    }

    public static func send(_ request: URLRequest) throws -> HTTPResponse {
        try wait(for: request) { URLSession.shared.dataTask(with: request, completionHandler: $0) }
    }

    /// Streams a file as the request body rather than loading it into memory.
    public static func upload(_ url: URL, file: URL, headers: [String: String] = [:], timeout: TimeInterval = 3600) throws -> HTTPResponse {
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = "POST"
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
        return try wait(for: request) { URLSession.shared.uploadTask(with: request, fromFile: file, completionHandler: $0) }
    }

    public static func get(_ url: URL, headers: [String: String] = [:], timeout: TimeInterval = 30) throws -> HTTPResponse {
        var request = URLRequest(url: url, timeoutInterval: timeout)
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        return try send(request)
    }

    public static func post(_ url: URL, json body: Data, headers: [String: String] = [:], timeout: TimeInterval = 30) throws -> HTTPResponse {
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = "POST"
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        return try send(request)
    }
}
