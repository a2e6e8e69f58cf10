import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file read and written at explicit offsets (pread/pwrite), so a sender can serve any
/// packet and a receiver can place any verified chunk without seeking or buffering the file.
/// Offsets make concurrent use from several threads safe as long as their ranges don't overlap.
public final class FileBytes: @unchecked Sendable {
    private let fd: Int32
    public let path: String

    public init(readingAt path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        self.path = path
        guard fd >= 0 else { throw ContentError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
    }

    public init(writingAt path: String) throws {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        self.path = path
        guard fd >= 0 else { throw ContentError.io("cannot open \(path) for writing: \(String(cString: strerror(errno)))") }
    }

    private var isClosed = false
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        _ = Glibc.close(fd)
    }

    deinit { close() }

    public func size() throws -> UInt64 {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ContentError.io("cannot stat \(path)") }
        return UInt64(info.st_size)
    }

    public func truncate(to size: UInt64) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw ContentError.io("cannot size \(path): \(String(cString: strerror(errno)))") }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ContentError.io("short read of \(path) at \(offset + UInt64(done))") }
            done += n
        }
    }

    public func read(count: Int, at offset: UInt64) throws -> Data {
        var data = Data(count: count)
        try data.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return data
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ContentError.io("write to \(path) failed: \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    /// Copies `count` bytes at `offset` of `source` to the same offset here: in the kernel
    /// (copy_file_range), or through a buffer where the kernel can't (another file system on
    /// an old kernel).
    public func copy(from source: FileBytes, at offset: UInt64, count: UInt64) throws {
        var done: UInt64 = 0
        while done < count {
            var from = off_t(offset + done), to = off_t(offset + done)
            let n = copyFileRange.map { $0(source.fd, &from, fd, &to, Int(min(count - done, 1 << 30)), 0) } ?? -1
            if n > 0 { done += UInt64(n); continue }
            if n < 0 && errno == EINTR && copyFileRange != nil { continue }
            guard n < 0, copyFileRange == nil || [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP].contains(errno) else {
                throw ContentError.io("copy from \(source.path) to \(path) failed at \(offset + done): \(n == 0 ? "short source" : String(cString: strerror(errno)))")
            }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while done < count {
                let length = Int(min(count - done, UInt64(buffer.count)))
                try buffer.withUnsafeMutableBytes { try source.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<length]), at: offset + done) }
                try buffer.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[..<length]), at: offset + done) }
                done += UInt64(length)
            }
        }
    }

    public func sync() throws {
        guard fsync(fd) == 0 else { throw ContentError.io("fsync \(path) failed") }
    }
}

/// glibc's copy_file_range, which its Swift module does not export (it is a GNU extension).
private typealias CopyFileRange = @convention(c) (Int32, UnsafeMutablePointer<off_t>?, Int32, UnsafeMutablePointer<off_t>?, Int, UInt32) -> Int
private let copyFileRange: CopyFileRange? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "copy_file_range").map {
    unsafeBitCast($0, to: CopyFileRange.self)
}
