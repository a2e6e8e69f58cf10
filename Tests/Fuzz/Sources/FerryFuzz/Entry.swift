import Foundation

// libFuzzer owns main and calls the two functions below. The target is chosen by environment
// rather than by flag, so that every libFuzzer flag passes through untouched:
//   FERRY_FUZZ_TARGET=list                       print the target names and exit
//   FERRY_FUZZ_TARGET=NAME FERRY_FUZZ_SEEDS=DIR  write NAME's seed inputs into DIR and exit
//   FERRY_FUZZ_TARGET=NAME [libFuzzer flags and corpus directories or inputs]   fuzz NAME

let selected: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["FERRY_FUZZ_TARGET"] ?? ""
    guard let target = targets.first(where: { $0.name == name }) else {
        FileHandle.standardError.write(Data("FERRY_FUZZ_TARGET must be `list` or one of: \(targets.map(\.name).joined(separator: " "))\n".utf8))
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    if let status = command() { exit(status) }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    selected.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// LeakSanitizer reports allocations of the toolchain's Foundation that are not leaks (a loop of
/// `Data(base64Encoded:)` keeps a flat RSS, yet each call is reported), and a leak is not what this
/// harness judges. Set here rather than by flag so that a replayed crash behaves the same.
@_cdecl("__asan_default_options")
public func asanDefaultOptions() -> UnsafePointer<CChar> {
    UnsafeRawPointer(("detect_leaks=0" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Runs the modes that are not fuzzing and returns their exit status; nil to go on fuzzing.
func command() -> CInt? {
    let environment = ProcessInfo.processInfo.environment
    if environment["FERRY_FUZZ_TARGET"] == "list" {
        print(targets.map(\.name).joined(separator: "\n"))
        return 0
    }
    let target = selected
    guard let directory = environment["FERRY_FUZZ_SEEDS"] else { return nil }
    do {
        for (i, seed) in try target.seeds(Example.committedCorpus()).enumerated() {
            try seed.write(to: URL(fileURLWithPath: directory).appendingPathComponent(String(format: "seed-%03d", i)))
        }
        return 0
    } catch {
        FileHandle.standardError.write(Data("cannot write the seeds of \(target.name) to \(directory): \(error)\n".utf8))
        return 1
    }
}
