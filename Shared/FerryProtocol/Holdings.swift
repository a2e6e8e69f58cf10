import Foundation

/// Content a device is still getting: it holds `chunks` of its `of` verified, and serves them
/// while the rest arrive (a downloading device is a source for a crowd).
public struct PartialHolding: Codable, Sendable, Equatable {
    public var contentId: ContentID
    public var chunks: Int
    public var of: Int
    public init(contentId: ContentID, chunks: Int, of: Int) {
        self.contentId = contentId
        self.chunks = chunks
        self.of = of
    }
}

/// An agent's full holdings, PUBlished to the matcher every interval and on every change.
/// Full state rather than deltas: a lost message is repaired by the next one, and an entry
/// expires when its device stops announcing. Frames: `[topic "holdings", version, kind, JSON]`.
public struct HoldingsAnnouncement: WireMessage {
    public static let kind = "holdings"
    public static let topic = "holdings"

    public var deviceId: DeviceID
    /// Increases with every announcement of this device; older ones are ignored.
    public var sequence: UInt64
    public var contents: [ContentID]
    /// False when the device's operator switched serving off.
    public var serving: Bool
    /// Sessions the device is sending right now.
    public var activeUploads: Int
    public var zone: String?
    /// How often the device announces; the matcher forgets it after a few missed intervals.
    public var intervalMilliseconds: Int
    /// Content it is getting now, with how much of it it holds; absent from older agents.
    public var partial: [PartialHolding]?

    public init(deviceId: DeviceID, sequence: UInt64, contents: [ContentID], serving: Bool, activeUploads: Int,
                zone: String?, intervalMilliseconds: Int, partial: [PartialHolding]? = nil) {
        self.partial = partial
        self.deviceId = deviceId
        self.sequence = sequence
        self.contents = contents
        self.serving = serving
        self.activeUploads = activeUploads
        self.zone = zone
        self.intervalMilliseconds = intervalMilliseconds
    }

    /// Every field is bounded, because the matcher does arithmetic with them and ranks by them.
    public static let intervalRange = 50...3_600_000
    public static let maxActiveUploads = 10_000
    public static let maxZoneLength = 128

    public func validate() throws {
        guard Self.intervalRange.contains(intervalMilliseconds) else {
            throw WireError.invalid("announcement interval must be \(Self.intervalRange.lowerBound)...\(Self.intervalRange.upperBound) ms")
        }
        guard (0...Self.maxActiveUploads).contains(activeUploads) else {
            throw WireError.invalid("activeUploads must be 0...\(Self.maxActiveUploads)")
        }
        if let zone, zone.utf8.count > Self.maxZoneLength { throw WireError.invalid("zone longer than \(Self.maxZoneLength) bytes") }
        // 50,000 ids of 67 bytes each fit the envelope's 4 MiB body.
        guard contents.count <= 50_000 else { throw WireError.invalid("too many holdings in one announcement") }
        guard (partial?.count ?? 0) <= 1_000 else { throw WireError.invalid("more than 1,000 partial holdings in one announcement") }
        for holding in partial ?? [] where holding.of < 1 || !(0...holding.of).contains(holding.chunks) {
            throw WireError.invalid("a partial holding must hold 0...of chunks of at least 1")
        }
    }
}
