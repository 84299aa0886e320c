import Foundation
@testable import HandoffRequest

/// The handoff JSON decoder on arbitrary bytes: it never crashes, what it accepts keeps the
/// promises the rest of the daemon relies on (limits, no control characters in identifiers),
/// and its fast reader (`scan`) agrees with the general decoder wherever it answers.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHandoffRequest(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let limits = HandoffRequestLimits()
    let bytes = Array(UnsafeBufferPointer(start: start, count: count))
    if !bytes.isEmpty, let scanned = bytes.withUnsafeBytes({ HandoffRequest.scan($0, limits: limits) }) {
        precondition(scanned == (try? HandoffRequest.decodeGeneral(bytes, limits: limits)), "the fast reader disagrees with JSONDecoder")
    }
    guard let request = try? HandoffRequest.decode(Array(UnsafeBufferPointer(start: start, count: count)), limits: limits) else {
        return 0
    }
    for identifier in [request.model, request.backend, request.testPattern, request.requestID, request.userID, request.profile, request.threadID] {
        guard let identifier else { continue }
        precondition(identifier.utf8.count <= limits.maxIdentifierBytes, "identifier over its limit")
        precondition(!identifier.unicodeScalars.contains(where: \.isControlCharacter), "control character accepted")
    }
    precondition((request.messages?.count ?? 0) <= limits.maxMessages, "too many messages accepted")
    precondition(request.responseHeaders.count <= limits.maxResponseHeaders, "too many headers accepted")
    for header in request.responseHeaders {
        precondition(!header.value.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" }, "CTL in a header value")
    }
    if let temperature = request.temperature { precondition((0...2).contains(temperature), "temperature out of range") }
    return 0
}
