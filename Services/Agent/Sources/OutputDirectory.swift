import Foundation

/// The one directory `ferry get --output` may write into. Whoever reaches the agent's control
/// socket chooses the output path, and the agent runs with the device's rights, so a path is
/// taken only when, with `..` and symbolic links resolved, it names a file in this directory
/// or below it.
struct OutputDirectory: Sendable {
    let root: URL

    init(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        root = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath()
    }

    /// Where to write `path` (relative paths are taken from the directory), or why not.
    func resolve(_ path: String) -> Result<URL, Refusal> {
        let asked = (path.hasPrefix("/") ? URL(fileURLWithPath: path) : root.appendingPathComponent(path)).standardizedFileURL
        let name = asked.lastPathComponent
        guard !name.isEmpty, name != "/", name != ".", name != ".." else { return .failure(Refusal(path: path, root: root)) }
        let parent = asked.deletingLastPathComponent().resolvingSymlinksInPath()
        guard parent.path == root.path || parent.path.hasPrefix(root.path == "/" ? "/" : root.path + "/") else {
            return .failure(Refusal(path: path, root: root))
        }
        return .success(parent.appendingPathComponent(name))
    }

    struct Refusal: Error, CustomStringConvertible {
        let path: String
        let root: URL
        var description: String { "output-outside-directory: \(path) is not under the agent's output directory \(root.path) (FERRY_AGENT_OUTPUT_DIR)" }
    }
}
