import Foundation
import Testing

/// Runs a Python script as a server outside Ferry would, with the system's python3 and pyzmq
/// (Scripts/test installs python3-zmq; a pyenv `python3` on PATH may not have it). Returns
/// what it printed; a failing script fails the test with its standard error.
func runPyzmq(_ script: String, _ arguments: [String]) throws -> String {
    let process = Process()
    let system = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
    process.executableURL = URL(fileURLWithPath: system ? "/usr/bin/python3" : "/usr/bin/env")
    process.arguments = (system ? [] : ["python3"]) + ["-c", script] + arguments
    let out = Pipe(), errors = Pipe()
    process.standardOutput = out
    process.standardError = errors
    try process.run()
    let printed = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    try #require(process.terminationStatus == 0, "python3 with pyzmq failed (Scripts/test installs python3-zmq): \(stderr)")
    return String(decoding: printed, as: UTF8.self)
}
