import ArgumentParser
import FerryProtocol
import FerryService
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct Withdraw: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Withdraw content at the origin: no new downloads, and every device drops its copy.")

    @Argument(help: "The content id.")
    var contentId: String

    @OptionGroup var operatorOptions: OperatorOptions

    func run() throws {
        let id: ContentID
        do { id = try ContentID(contentId) } catch { throw ValidationError("\(error)") }
        let request = try operatorOptions.request("DELETE", "v1/content/\(id.hex)")
        let response = try operatorOptions.answer { try BlockingHTTP.send(request) }
        guard let result = try? JSONCoding.decoder.decode(ContentWithdrawalResult.self, from: response.body) else {
            printError("ferry: the origin's answer is not a withdrawal result")
            throw ExitStatus.failed
        }
        print("withdrew \(result.contentId.hex)" + (result.ferryTold ? "" : " (Ferry could not be told: devices keep their copies for now)"))
    }
}
