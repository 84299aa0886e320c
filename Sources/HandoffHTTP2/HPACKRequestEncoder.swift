public import NIOCore

/// Encodes a request's header block (RFC 7541) without the dynamic table: fields the static
/// table holds whole are indexed, the rest are literals "without indexing" (by the static
/// table's name where it has one), and no string is Huffman-coded. So the block costs no
/// state on either side, and the peer's SETTINGS_HEADER_TABLE_SIZE never matters.
/// Pure.
public enum HPACKRequestEncoder {
    /// Writes `name: value`, the value without leading or trailing spaces and tabs (they are
    /// not part of a field value, RFC 9110 §5.5; strict servers reset a stream that sends them).
    /// Names must be lower-case tokens; `false` (and nothing written) for a field HTTP/2
    /// forbids: another name, or CR, LF or NUL in the value.
    @discardableResult
    public static func write(name: String, value: String, into buffer: inout ByteBuffer) -> Bool {
        let value = Self.trimmed(value)
        guard Self.isValid(name: name, value: value) else { return false }
        if let index = Self.wholeField(name: name, value: value) {
            Self.writeInteger(index, prefix: 7, pattern: 0x80, into: &buffer)
            return true
        }
        if let index = Self.nameIndex(name) {
            Self.writeInteger(index, prefix: 4, pattern: 0x00, into: &buffer)
        } else {
            buffer.writeInteger(UInt8(0))
            Self.writeString(name, into: &buffer)
        }
        Self.writeString(value, into: &buffer)
        return true
    }

    /// A dynamic table size update to 0 (RFC 7541 §6.3), first in a header block: a server whose
    /// SETTINGS_HEADER_TABLE_SIZE is below the default requires an update before the next block,
    /// and 0 is never above any size it may set.
    public static func writeTableSizeUpdate(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(0x20))
    }

    /// Static table entries (RFC 7541 Appendix A) whose name and value a request sends.
    private static func wholeField(name: String, value: String) -> Int? {
        switch (name, value) {
        case (":method", "GET"): 2
        case (":method", "POST"): 3
        case (":path", "/"): 4
        case (":scheme", "http"): 6
        case (":scheme", "https"): 7
        default: nil
        }
    }

    /// Static table names (RFC 7541 Appendix A) a request sends.
    private static func nameIndex(_ name: String) -> Int? {
        switch name {
        case ":authority": 1
        case ":method": 2
        case ":path": 4
        case ":scheme": 6
        case "accept-encoding": 16
        case "accept-language": 17
        case "accept": 19
        case "authorization": 23
        case "cache-control": 24
        case "content-length": 28
        case "content-type": 31
        case "cookie": 32
        case "user-agent": 58
        default: nil
        }
    }

    static func isValid(name: String, value: String) -> Bool {
        guard !name.isEmpty else { return false }
        var first = true
        for byte in name.utf8 {
            // A pseudo-header's colon first, then a token's characters (RFC 9110 §5.6.2), lower-case.
            if first, byte == UInt8(ascii: ":") {
                first = false
                continue
            }
            first = false
            guard byte < 128, Self.tokenLowercase[Int(byte)] else { return false }
        }
        for byte in value.utf8 where byte == 0 || byte == 0x0a || byte == 0x0d { return false }
        return true
    }

    /// `tchar` of RFC 9110 §5.6.2 without upper-case letters, by byte.
    private static let tokenLowercase: [Bool] = (0..<128).map { byte in
        switch UInt8(byte) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: "!#$%&'*+-.^_`|~".utf8.contains(UInt8(byte))
        }
    }

    /// `value` without leading and trailing spaces and tabs.
    private static func trimmed(_ value: String) -> String {
        let utf8 = value.utf8
        guard let first = utf8.first, let last = utf8.last else { return value }
        let isWhitespace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
        guard isWhitespace(first) || isWhitespace(last) else { return value }
        guard let start = utf8.firstIndex(where: { !isWhitespace($0) }), let end = utf8.lastIndex(where: { !isWhitespace($0) }) else { return "" }
        return String(value[start...end])
    }

    /// An HPACK integer (RFC 7541 §5.1) with a `prefix`-bit prefix after `pattern`'s bits.
    static func writeInteger(_ value: Int, prefix: Int, pattern: UInt8, into buffer: inout ByteBuffer) {
        let limit = (1 << prefix) - 1
        guard value >= limit else {
            buffer.writeInteger(pattern | UInt8(value))
            return
        }
        buffer.writeInteger(pattern | UInt8(limit))
        var rest = value - limit
        while rest >= 128 {
            buffer.writeInteger(UInt8(rest & 0x7f | 0x80))
            rest >>= 7
        }
        buffer.writeInteger(UInt8(rest))
    }

    /// A string literal, not Huffman-coded.
    private static func writeString(_ string: String, into buffer: inout ByteBuffer) {
        Self.writeInteger(string.utf8.count, prefix: 7, pattern: 0x00, into: &buffer)
        buffer.writeString(string)
    }
}
