import Foundation

/// How one fuzz input becomes the frames of a multi-frame message: a count byte, then every
/// frame but the last as a big-endian UInt16 length and its bytes, then the last frame as all
/// that remains. The body (JSON or payload) travels last, so when libFuzzer grows or shrinks it
/// the frames in front keep their boundaries; an input that runs out early gives fewer frames.
enum Frames {
    static func split(_ input: UnsafeRawBufferPointer) -> [Data] {
        guard let count = input.first else { return [] }
        var frames: [Data] = []
        var rest = input.dropFirst()
        while frames.count + 1 < count, rest.count >= 2 {
            let length = Int(rest[rest.startIndex]) << 8 | Int(rest[rest.startIndex + 1])
            rest = rest.dropFirst(2)
            frames.append(Data(rest.prefix(length)))
            rest = rest.dropFirst(length)
        }
        if frames.count < count { frames.append(Data(rest)) }
        return frames
    }

    static func join(_ frames: [Data]) -> Data {
        precondition(frames.count <= UInt8.max && frames.dropLast().allSatisfy { $0.count <= UInt16.max })
        var input = Data([UInt8(frames.count)])
        for frame in frames.dropLast() {
            input.append(contentsOf: [UInt8(frame.count >> 8), UInt8(frame.count & 0xff)])
            input.append(frame)
        }
        input.append(frames.last ?? Data())
        return input
    }
}
