import AsyncHTTPClient
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NIOCore
import NIOHTTP1

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

/// HTTP for code running on a loop thread or a side-work thread (never the cooperative pool,
/// which this would block): AsyncHTTPClient's shared client, its future waited on.
/// URLSession was used before; on Linux its libcurl loop spent about a core of system time per
/// download fetching ranges from an origin behind a 100 Mbit/s link, where this spends a few percent.
public enum BlockingHTTP {
    /// Builds the request and waits for `execute` within `timeout`; any failure, building the
    /// request included, names the request.
    private static func perform<T: Sendable>(_ method: HTTPMethod, _ url: URL, headers: [String: String], body: HTTPClient.Body? = nil,
                                             timeout: TimeInterval,
                                             _ execute: (HTTPClient.Request, NIODeadline) -> EventLoopFuture<T>) throws -> T {
        do {
            let request = try HTTPClient.Request(url: url, method: method, headers: HTTPHeaders(headers.map { ($0.key, $0.value) }), body: body)
            return try execute(request, .now() + .milliseconds(Int64(timeout * 1000))).wait()
        } catch {
            throw HTTPError("\(method) \(url.absoluteString): \(error)")
        }
    }

    private static func exchange(_ method: HTTPMethod, _ url: URL, headers: [String: String], body: HTTPClient.Body?,
                                 timeout: TimeInterval) throws -> HTTPResponse {
        let answer = try perform(method, url, headers: headers, body: body, timeout: timeout) {
            HTTPClient.shared.execute(request: $0, deadline: $1)
        }
        var lowercased: [String: String] = [:]
        for (name, value) in answer.headers { lowercased[name.lowercased()] = value }
        return HTTPResponse(status: Int(answer.status.code), body: answer.body.map { Data($0.readableBytesView) } ?? Data(), headers: lowercased)
    }

    public static func send(_ request: URLRequest) throws -> HTTPResponse {
        guard let url = request.url else { throw HTTPError("a request without a URL") }
        let body = request.httpBody.map { HTTPClient.Body.bytes($0) }
        return try exchange(HTTPMethod(rawValue: request.httpMethod ?? "GET"), url, headers: request.allHTTPHeaderFields ?? [:],
                            body: body, timeout: request.timeoutInterval)
    }

    /// Streams a file as the request body rather than loading it into memory.
    public static func upload(_ url: URL, file: URL, headers: [String: String] = [:], timeout: TimeInterval = 3600) throws -> HTTPResponse {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        let length = try handle.seekToEnd()
        try handle.seek(toOffset: 0)
        let reader = FileReader(handle: handle)
        let body = HTTPClient.Body.stream(contentLength: Int64(length)) { writer in reader.writeAll(to: writer) }
        return try exchange(.POST, url, headers: headers.merging(["Content-Type": "application/octet-stream"]) { $1 }, body: body,
                            timeout: timeout)
    }

    public static func get(_ url: URL, headers: [String: String] = [:], timeout: TimeInterval = 30) throws -> HTTPResponse {
        try exchange(.GET, url, headers: headers, body: nil, timeout: timeout)
    }

    /// A GET whose body goes to `receive` piece by piece as it arrives (on the client's event
    /// loop, in order), so a large range is put to use before all of it has come. A status not
    /// in `expect` fails the request before its body is read; so does `receive` throwing.
    public static func stream(_ url: URL, headers: [String: String] = [:], timeout: TimeInterval = 60, expect: Set<Int>,
                              receive: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) throws {
        let delegate = BodyStream(expect: expect, receive: receive)
        try perform(.GET, url, headers: headers, timeout: timeout) {
            HTTPClient.shared.execute(request: $0, delegate: delegate, deadline: $1).futureResult
        }
    }

    private final class BodyStream: HTTPClientResponseDelegate, Sendable {
        typealias Response = Void
        let expect: Set<Int>
        let receive: @Sendable (UnsafeRawBufferPointer) throws -> Void
        init(expect: Set<Int>, receive: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) {
            self.expect = expect
            self.receive = receive
        }

        func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
            guard expect.contains(Int(head.status.code)) else { return task.eventLoop.makeFailedFuture(HTTPError("answered \(head.status.code)")) }
            return task.eventLoop.makeSucceededVoidFuture()
        }

        func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
            do {
                try buffer.withUnsafeReadableBytes { try receive($0) }
                return task.eventLoop.makeSucceededVoidFuture()
            } catch {
                return task.eventLoop.makeFailedFuture(error)
            }
        }

        func didFinishRequest(task: HTTPClient.Task<Void>) throws {}
    }

    public static func post(_ url: URL, json body: Data, headers: [String: String] = [:], timeout: TimeInterval = 30) throws -> HTTPResponse {
        try exchange(.POST, url, headers: headers.merging(["Content-Type": "application/json"]) { $1 }, body: .bytes(body),
                     timeout: timeout)
    }

    /// Reads a file a megabyte at a time, each piece written once the one before is taken.
    private final class FileReader: @unchecked Sendable {
        let handle: FileHandle
        init(handle: FileHandle) { self.handle = handle }

        func writeAll(to writer: HTTPClient.Body.StreamWriter) -> EventLoopFuture<Void> {
            let loop = HTTPClient.shared.eventLoopGroup.any()
            let piece: Data
            do {
                piece = try handle.read(upToCount: 1 << 20) ?? Data()
            } catch {
                return loop.makeFailedFuture(error)
            }
            if piece.isEmpty { return loop.makeSucceededVoidFuture() }
            return writer.write(.byteBuffer(ByteBuffer(bytes: piece))).flatMap { self.writeAll(to: writer) }
        }
    }
}
