import Foundation

/// Overlay addresses for virtual links, from one IPv4 block (by default `100.96.0.0/12`, inside
/// the shared address space of RFC 6598, so they never collide with a device's real
/// addresses). Each party of a session gets one; they return to the pool when it closes.
public struct AddressPool: Sendable {
    public let cidr: String
    private let base: UInt32
    private let size: UInt32
    private var inUse: Set<UInt32> = []
    private var cursor: UInt32 = 1

    public init(cidr: String) throws {
        let parts = cidr.split(separator: "/")
        guard parts.count == 2, let prefix = Int(parts[1]), (8...30).contains(prefix) else {
            throw AddressPoolError.invalidCIDR(cidr)
        }
        let octets = parts[0].split(separator: ".").compactMap { UInt32($0) }
        guard octets.count == 4, octets.allSatisfy({ $0 <= 255 }) else { throw AddressPoolError.invalidCIDR(cidr) }
        let address = octets.reduce(0) { $0 << 8 | $1 }
        size = 1 << UInt32(32 - prefix)
        base = address & ~(size - 1)
        self.cidr = cidr
    }

    /// Usable addresses: the block less its network and broadcast addresses.
    public var capacity: Int { Int(size) - 2 }
    public var allocated: Int { inUse.count }

    public mutating func allocate() -> String? {
        guard inUse.count < capacity else { return nil }
        // Round-robin, so an address just released is not handed out again at once.
        while true {
            let offset = cursor
            cursor = cursor + 1 >= size - 1 ? 1 : cursor + 1
            if !inUse.contains(offset) {
                inUse.insert(offset)
                return Self.format(base + offset)
            }
        }
    }

    public mutating func release(_ address: String) {
        guard let value = Self.parse(address), value >= base, UInt64(value) < UInt64(base) + UInt64(size) else { return }
        inUse.remove(value - base)
    }

    static func format(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    static func parse(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".").compactMap { UInt32($0) }
        guard octets.count == 4, octets.allSatisfy({ $0 <= 255 }) else { return nil }
        return octets.reduce(0) { $0 << 8 | $1 }
    }
}

public enum AddressPoolError: Error, CustomStringConvertible {
    case invalidCIDR(String)
    public var description: String {
        switch self {
        case .invalidCIDR(let text): "overlay address pool must be an IPv4 block like 100.96.0.0/12 with a prefix of 8-30 (got \(text))"
        }
    }
}
