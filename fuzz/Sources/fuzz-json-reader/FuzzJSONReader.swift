import Foundation
import HandoffJSON

/// Any JSON value, read and thrown away: JSONDecoder checks the syntax of the whole text and
/// decodes nothing (string contents are only decoded when asked for, as the reader's skip).
private struct Anything: Decodable {
    init(from decoder: any Decoder) throws {}
}

/// The pull reader on arbitrary bytes: it never crashes or reads out of bounds, never takes as
/// JSON what JSONDecoder (the daemon's authority) refuses, and decodes strings as it does.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSONReader(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    var reader = JSONReader(bytes)
    let accepted: Bool
    do {
        try reader.skipValue()
        try reader.finish()
        accepted = true
    } catch {
        accepted = false
    }
    guard accepted else { return 0 }
    let data = Data(bytes)
    precondition((try? JSONDecoder().decode(Anything.self, from: data)) != nil, "the reader took what JSONDecoder refuses")
    var strings = JSONReader(bytes)
    if (try? strings.peek()) == .string, let value = try? strings.readString() {
        precondition((try? JSONDecoder().decode(String.self, from: data)) == value, "a string decoded differently")
    }
    return 0
}
