import FerryProtocol
import Foundation

/// Which held content to delete so new content fits a device's storage quota: the least
/// recently used first, never anything `protected` (being sent or downloaded).
public enum StoreEviction {
    public struct Entry: Sendable, Equatable {
        public var id: ContentID
        public var bytes: UInt64
        public var lastUsed: Date
        public init(id: ContentID, bytes: UInt64, lastUsed: Date) {
            self.id = id
            self.bytes = bytes
            self.lastUsed = lastUsed
        }
    }

    /// Nil when even evicting everything allowed would not make room.
    public static func victims(held: [Entry], inUse: UInt64, needed: UInt64, quota: UInt64, protected: Set<ContentID>) -> [ContentID]? {
        guard inUse + needed > quota else { return [] }
        var over = inUse + needed - quota
        var chosen: [ContentID] = []
        for entry in held.filter({ !protected.contains($0.id) }).sorted(by: { $0.lastUsed < $1.lastUsed }) {
            guard over > 0 else { break }
            chosen.append(entry.id)
            over -= min(over, entry.bytes)
        }
        return over == 0 ? chosen : nil
    }
}
