import ZeroMQ

extension Socket {
    /// Reads what an XPUB socket heard from its subscribers: true when one subscribed since the
    /// last call. A plain PUB drops what it sends before a subscriber's subscription reaches it,
    /// and a subscriber that restarts subscribes again when it reconnects (passed up only by a
    /// verbose XPUB, `setXPubVerbose`), so this is when a publisher has something to send (again).
    public func takeSubscriptions() -> Bool {
        var subscribed = false
        while let message = try? receive(dontWait: true) {
            if message.first?.withUnsafeBytes({ $0.first }) == 1 { subscribed = true }
        }
        return subscribed
    }
}
