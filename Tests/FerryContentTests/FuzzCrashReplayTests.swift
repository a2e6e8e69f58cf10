import FerryContent
import FerryProtocol
import Foundation
import Testing

/// The inputs libFuzzer once crashed a decoder with (Tests/Fuzz/crashes/TARGET), replayed on
/// every test run, not only when someone runs Scripts/fuzz: each is refused cleanly, and
/// whatever decodes survives its own round trip.
@Suite struct FuzzCrashesReplayed {
    static let crashes = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/crashes")

    /// The fuzz harness's framing (Tests/Fuzz/Sources/FerryFuzz/Frames.swift): a count byte,
    /// then each frame but the last behind a 2-byte length, then the last.
    static func frames(_ input: Data) -> [Data] {
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

    static func replay<M: WireMessage>(_ type: M.Type, _ input: Data) throws {
        guard let message = try? Envelope(frames: frames(input)).decode(M.self) else { return }
        #expect(try M.decode(frames: message.frames()) == message)
    }

    @Test func everyCrashInputIsRefusedCleanly() throws {
        let targets = try FileManager.default.contentsOfDirectory(atPath: Self.crashes.path).sorted()
        #expect(!targets.isEmpty)
        var replayed = 0
        for target in targets {
            let directory = Self.crashes.appendingPathComponent(target)
            for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
                let input = try Data(contentsOf: directory.appendingPathComponent(name))
                switch target {
                case "manifest":
                    if let manifest = try? ManifestCodec.decode(input) { #expect(try ManifestCodec.decode(ManifestCodec.encode(manifest)) == manifest) }
                case "envelope.\(DownloadRequest.kind)": try Self.replay(DownloadRequest.self, input)
                case "envelope.\(MatchRequest.kind)": try Self.replay(MatchRequest.self, input)
                case "envelope.\(MatchDecision.kind)": try Self.replay(MatchDecision.self, input)
                case "envelope.\(SessionOpen.kind)": try Self.replay(SessionOpen.self, input)
                default:
                    Issue.record("no replay here for fuzz target \(target): add its decoder to this switch")
                    continue
                }
                replayed += 1
            }
        }
        #expect(replayed >= targets.count)
    }
}
