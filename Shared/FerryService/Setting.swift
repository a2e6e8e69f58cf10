import ArgumentParser
import Foundation

/// One configuration setting: the variable it is read from, its default and what it means,
/// written once (`Settings`). An option is built from it, `@Option(help: Settings.x.help) var x =
/// Settings.x.value`, taking its flag from the property's name; its help ends with the
/// variable, and docs/configuration.md lists the variable with the same default (a test checks).
public struct Setting<Value: Sendable>: Sendable {
    public let variable: String
    public let summary: String
    private let fallback: @Sendable () -> Value
    private let parse: @Sendable (String) -> Value?

    init(_ variable: String, summary: String, fallback: @escaping @Sendable () -> Value, parse: @escaping @Sendable (String) -> Value?) {
        self.variable = variable
        self.summary = summary
        self.fallback = fallback
        self.parse = parse
    }

    /// The variable's value when it is set (and not empty) and parses; else the default.
    public var value: Value {
        let text = Env.string(variable, "")
        return text.isEmpty ? fallback() : parse(text) ?? fallback()
    }

    /// The default, as the code has it when the variable isn't set.
    public var defaultValue: Value { fallback() }

    public var help: ArgumentHelp { ArgumentHelp("\(summary) Env: \(variable).") }

    /// The help in a command's own words (a shared variable read for one purpose there).
    public func help(_ words: String) -> ArgumentHelp { ArgumentHelp("\(words) Env: \(variable).") }
}

extension Setting where Value == String {
    init(_ variable: String, default value: @escaping @Sendable @autoclosure () -> String, _ summary: String) {
        self.init(variable, summary: summary, fallback: value, parse: { $0 })
    }
}

extension Setting where Value == Int {
    init(_ variable: String, default value: Int, _ summary: String) {
        self.init(variable, summary: summary, fallback: { value }, parse: { Int($0) })
    }
}

extension Setting where Value == Bool {
    init(_ variable: String, default value: Bool, _ summary: String) {
        self.init(variable, summary: summary, fallback: { value }, parse: { text in
            switch text.lowercased() {
            case "1", "true", "yes", "on": true
            case "0", "false", "no", "off": false
            default: nil
            }
        })
    }
}

/// What any setting tells the docs test: its variable and default, as text.
public protocol DescribedSetting: Sendable {
    var variable: String { get }
    var defaultText: String { get }
}

extension Setting: DescribedSetting {
    public var defaultText: String { "\(defaultValue)" }
}
