import ArgumentParser
import FerryProtocol
import FerryService
import Foundation

/// Join tokens: what a device or relay enrols with (`docker swarm join-token`, for Ferry).
struct Tokens: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make, list and revoke the join tokens devices and relays enrol with.",
        subcommands: [Create.self, List.self, Revoke.self], defaultSubcommand: List.self)

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a join token and print it (shown this once).")
        @OptionGroup var operatorOptions: OperatorOptions

        @Option(help: "What it enrols: device or relay.")
        var kind: String

        @Option(help: "Only this id may enrol with it (and no other token's party may take the id).")
        var id: String?

        @Option(help: "How many parties may enrol with it; none: any number (replicas of a scaled service share one).")
        var uses: Int?

        @Option(help: "How long it works: 90s, 30m, 24h or 7d; none: until revoked.")
        var expires: String?

        @Flag(help: "Print the token and its record as JSON.")
        var json = false

        func run() throws {
            guard let kind = PartyKind(rawValue: kind) else { throw ValidationError("--kind is device or relay") }
            let partyId: DeviceID?
            do { partyId = try id.map { try DeviceID($0) } } catch { throw ValidationError("--id: \(error)") }
            guard uses.map({ $0 >= 1 }) ?? true else { throw ValidationError("--uses must be at least 1") }
            var seconds: Int?
            if let expires {
                guard let parsed = Self.duration(expires) else { throw ValidationError("--expires: not a duration: \(expires)") }
                seconds = parsed
            }
            var request = try operatorOptions.request("POST", "v1/tokens")
            request.httpBody = try JSONCoding.encoder.encode(JoinTokenRequest(kind: kind, partyId: partyId, uses: uses, expiresInSeconds: seconds))
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            let response = try operatorOptions.answer { try BlockingHTTP.send(request) }
            if json { return print(String(decoding: response.body, as: UTF8.self)) }
            let issued = try JSONCoding.decoder.decode(IssuedJoinToken.self, from: response.body)
            print(issued.token)
        }

        /// Seconds in `90s`, `30m`, `24h`, `7d`, or a plain number of seconds.
        static func duration(_ text: String) -> Int? {
            let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
            if let unit = text.last.flatMap({ units[$0] }), let value = Int(text.dropLast()), value > 0 { return value * unit }
            return Int(text).flatMap { $0 > 0 ? $0 : nil }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the join tokens (never their secrets).")
        @OptionGroup var operatorOptions: OperatorOptions

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            let tokens: [JoinTokenInfo] = try operatorOptions.all("v1/tokens") { $0.tokenId }
            if json { return print(String(decoding: try JSONCoding.encoder.encode(tokens), as: UTF8.self)) }
            print("\(tokens.count) tokens")
            for token in tokens {
                let state = token.revokedAt.map { "REVOKED \($0)" } ?? token.expiresAt.map { "expires \($0)" } ?? "no expiry"
                print("  \(token.tokenId)  \(token.kind.rawValue)  \(token.partyId.map { "for \($0)" } ?? "any id")  "
                      + "uses left \(token.usesLeft.map(String.init) ?? "unlimited")  enrolled \(token.enrolled)  \(state)")
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a join token: no party enrols with it again (those it enrolled stay).")
        @OptionGroup var operatorOptions: OperatorOptions

        @Argument(help: "The token's id (the part after FJT1.).")
        var tokenId: String

        func run() throws {
            let request = try operatorOptions.request("DELETE", "v1/tokens/\(tokenId)")
            let response = try operatorOptions.answer { try BlockingHTTP.send(request) }
            let info = try JSONCoding.decoder.decode(JoinTokenInfo.self, from: response.body)
            print("revoked token \(info.tokenId) at \(info.revokedAt ?? "?")")
        }
    }
}
