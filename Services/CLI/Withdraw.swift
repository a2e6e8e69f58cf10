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
        guard let url = URL(string: operatorOptions.origin)?.appendingPathComponent("v1/content/\(id.hex)") else { throw ValidationError("origin is not a URL") }
        var request = URLRequest(url: url, timeoutInterval: 10)
        request.httpMethod = "DELETE"
        for (name, value) in operatorOptions.authorization { request.setValue(value, forHTTPHeaderField: name) }
        let response: HTTPResponse
        do {
            response = try BlockingHTTP.send(request)
        } catch {
            printError("ferry: cannot reach the origin: \(error)")
            throw ExitStatus.unreachable
        }
        guard response.ok, let result = try? JSONCoding.decoder.decode(ContentWithdrawalResult.self, from: response.body) else {
            let detail = (try? JSONCoding.decoder.decode(ErrorBody.self, from: response.body)).map { "\($0.reason): \($0.error)" }
            printError("ferry: the origin refused: \(detail ?? "status \(response.status)")")
            throw ExitStatus.failed
        }
        print("withdrew \(result.contentId.hex)" + (result.ferryTold ? "" : " (Ferry could not be told: devices keep their copies for now)"))
    }
}
