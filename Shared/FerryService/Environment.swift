import Foundation

/// Defaults for command-line options come from `FERRY_*` environment variables, so a flag
/// overrides the environment, which overrides the built-in default. docs/configuration.md
/// lists every variable; a test checks that list against the code.
public enum Env {
    public static func string(_ name: String, _ fallback: String) -> String {
        if let value = ProcessInfo.processInfo.environment[name], !value.isEmpty { return value }
        return fallback
    }

    public static func int(_ name: String, _ fallback: Int) -> Int {
        Int(string(name, "")) ?? fallback
    }

    public static func bool(_ name: String, _ fallback: Bool) -> Bool {
        switch string(name, "").lowercased() {
        case "1", "true", "yes", "on": true
        case "0", "false", "no", "off": false
        default: fallback
        }
    }
}
