import FerryService
import FerryTrust
import Foundation
import Synchronization

/// The key fulfilment deliveries must be signed with: the fleet's `reporter-signing` key, a
/// key given as base64, or a file holding one. A file is read when the first delivery comes
/// (the reporter may write it after the origin starts) and kept once it reads.
final class ReporterKey: Sendable {
    enum Source {
        case given(String)
        case fleet(FleetKeys?)
    }

    private let file: String?
    private let loaded: Mutex<VerifyingKey?>

    init(_ source: Source) throws {
        switch source {
        case .fleet(let fleet):
            guard let fleet else {
                throw ConfigurationError("the origin needs the reporter's public key to accept fulfilments: FERRY_REPORTER_KEY, or transport keys")
            }
            file = nil
            loaded = Mutex(try VerifyingKey(base64: fleet.reporterSigningKey))
        case .given(let text):
            if Data(base64Encoded: text)?.count == 32 {
                file = nil
                loaded = Mutex(try VerifyingKey(base64: text))
            } else {
                file = text
                loaded = Mutex(nil)
            }
        }
    }

    func key() throws -> VerifyingKey {
        try loaded.withLock { key in
            if let key { return key }
            guard let file, let text = StoredSecret.read(at: URL(fileURLWithPath: file)) else {
                throw TrustError.io("the reporter's public key file \(file ?? "") can't be read yet")
            }
            let read = try VerifyingKey(base64: text)
            key = read
            return read
        }
    }
}
