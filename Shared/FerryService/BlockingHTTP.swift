import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

public struct HTTPResponse: Sendable {
    public var status: Int
    public var body: Data
    /// Header names lowercased.
    public var headers: [String: String] = [:]
    public var ok: Bool { (200..<300).contains(status) }
}

public struct HTTPError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// HTTP for code running on a loop thread or a worker thread (never the cooperative pool,
/// which this would block). URLSession is in the toolchain, so no extra package is built.
public enum BlockingHTTP {
    /// One request's session delegate: it gathers the answer and declines every
    /// authentication challenge. On Linux a 401 carrying `WWW-Authenticate` raises a challenge,
    /// and with no credential to offer swift-corelibs-foundation neither retries nor completes
    /// the task, so it would hang for ever (swift-corelibs-foundation#5456, fixed after 6.3.1).
    /// Declining cancels the task; the 401 and its body have already arrived, and are returned.
    private final class Exchange: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        private let lock = NSLock()
        private var body = Data()
        private var declined = false
        private var outcome: Result<HTTPResponse, Error>?
        let done = DispatchSemaphore(value: 0)

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            lock.withLock { body.append(data) }
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
                        completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
            lock.withLock { declined = true }
            completionHandler(.cancelAuthenticationChallenge, nil)
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
            lock.withLock {
                let http = task.response as? HTTPURLResponse
                if let error, !(declined && http != nil) {
                    outcome = .failure(error)
                } else {
                    var headers: [String: String] = [:]
                    for (name, value) in http?.allHeaderFields ?? [:] { headers["\(name)".lowercased()] = "\(value)" }
                    outcome = .success(HTTPResponse(status: http?.statusCode ?? 0, body: body, headers: headers))
                }
            }
            done.signal()
        }

        var result: Result<HTTPResponse, Error>? { lock.withLock { outcome } }
    }

    /// Starts a task made by `task` in a session of its own and waits for it to complete.
    private static func exchange(_ request: URLRequest, _ task: (URLSession) -> URLSessionTask) throws -> HTTPResponse {
        let exchange = Exchange()
        let session = URLSession(configuration: .ephemeral, delegate: exchange, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        task(session).resume()
        exchange.done.wait()
        switch exchange.result {
        case .success(let response): return response
        case .failure(let error):
            throw HTTPError("\(request.httpMethod ?? "GET") \(request.url?.absoluteString ?? "?"): \(error.localizedDescription)")
        case nil: throw HTTPError("\(request.httpMethod ?? "GET") \(request.url?.absoluteString ?? "?"): no answer")
        }
    }

    public static func send(_ request: URLRequest) throws -> HTTPResponse {
        try exchange(request) { $0.dataTask(with: request) }
    }

    /// Streams a file as the request body rather than loading it into memory.
    public static func upload(_ url: URL, file: URL, headers: [String: String] = [:], timeout: TimeInterval = 3600) throws -> HTTPResponse {
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = "POST"
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
        return try exchange(request) { $0.uploadTask(with: request, fromFile: file) }
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
