/// Turns the handoff's `response_headers` object into headers that are safe to send.
///
/// Names that are not RFC 9110 tokens, and names that would change the response's framing or
/// caching contract, are dropped. A value with a control character other than HTAB makes the
/// handoff invalid (it could split the response). The result is sorted by lower-cased name, so
/// the same input always gives the same bytes.
public enum ResponseHeaderFilter {
    /// Names the daemon sets itself or that would change framing; compared lower-cased.
    public static let reservedNames: Set<String> = [
        "content-type", "content-length", "transfer-encoding", "connection", "cache-control",
        "content-encoding", "x-accel-buffering", "keep-alive", "upgrade", "trailer", "te",
        "proxy-connection", "x-socket-handoff", "x-handoff-data",
    ]

    /// Filters `headers`; throws when a value is unsafe or limits are exceeded.
    public static func filter(_ headers: [String: String], limits: HandoffRequestLimits) throws(HandoffRequestError) -> [HandoffRequest.ResponseHeader] {
        guard headers.count <= limits.maxResponseHeaders else {
            throw .tooLarge("response_headers", limit: limits.maxResponseHeaders, unit: "headers")
        }
        var kept: [HandoffRequest.ResponseHeader] = []
        for (name, value) in headers {
            guard name.utf8.count <= limits.maxHeaderNameBytes else {
                throw .tooLarge("response_headers", limit: limits.maxHeaderNameBytes, unit: "bytes per name")
            }
            guard value.utf8.count <= limits.maxHeaderValueBytes else {
                throw .tooLarge("response_headers.\(name)", limit: limits.maxHeaderValueBytes)
            }
            guard Self.isValidValue(value) else {
                throw .invalidValue("response_headers.\(name)", "contains a control character")
            }
            guard Self.isToken(name), !Self.reservedNames.contains(name.lowercased()) else { continue }
            kept.append(.init(name: name, value: Self.trimmingWhitespace(value)))
        }
        return kept.sorted { ($0.name.lowercased(), $0.name) < ($1.name.lowercased(), $1.name) }
    }

    /// RFC 9110 §5.6.2: `token = 1*tchar`.
    public static func isToken(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy(Self.isTokenCharacter)
    }

    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    /// RFC 9110 §5.5: field values hold no CTL except HTAB.
    public static func isValidValue(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }
    }

    private static func trimmingWhitespace(_ value: String) -> String {
        let bytes = Array(value.utf8)
        guard let first = bytes.firstIndex(where: { $0 != 0x20 && $0 != 0x09 }) else { return "" }
        let last = bytes.lastIndex(where: { $0 != 0x20 && $0 != 0x09 })!
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}
