import Foundation

/// Defaults for command-line options come from `FERRY_*` environment variables, so a flag
/// overrides the environment, which overrides the built-in default. docs/configuration.md
/// lists every variable; a test checks that list against the code.
public enum Env {
    public static func string(_ name: String, _ fallback: String) -> String {
        if let value = ProcessInfo.processInfo.environment[name], !value.isEmpty { return value }
        return fallback
    }
}
