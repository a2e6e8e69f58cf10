import Foundation
import ZeroMQ

/// What `socket` receives within `seconds`, each message read by `read`, stopping as soon as
/// `enough` says what came is enough.
func received<T>(on socket: Socket, for seconds: Double, _ read: ([Message]) throws -> T,
                 until enough: ([T]) -> Bool = { _ in false }) throws -> [T] {
    var got: [T] = []
    let deadline = Date().addingTimeInterval(seconds)
    var poller = Poller()
    poller.add(socket)
    while Date() < deadline {
        try poller.poll(timeoutMilliseconds: 50)
        while let frames = try socket.receive(dontWait: true) { got.append(try read(frames)) }
        if enough(got) { break }
    }
    return got
}
