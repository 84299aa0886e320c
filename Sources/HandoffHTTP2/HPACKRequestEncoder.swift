public import NIOCore

/// Encodes a request's header block (RFC 7541) without the dynamic table: fields the static
/// table holds whole are indexed, the rest are literals "without indexing" (by the static
/// table's name where it has one), and no string is Huffman-coded. So the block costs no
/// state on either side, and the peer's SETTINGS_HEADER_TABLE_SIZE never matters.
/// Pure.
public enum HPACKRequestEncoder {
    /// Writes `name: value`. Names must be lower-case; `false` (and nothing written) for a
    /// field HTTP/2 forbids: an upper-case or empty name, or CR, LF or NUL in the value.
    @discardableResult
    public static func write(name: String, value: String, into buffer: inout ByteBuffer) -> Bool {
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
        for byte in name.utf8 where byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") || byte <= 0x20 || byte == 0x7f { return false }
        for byte in value.utf8 where byte == 0 || byte == 0x0a || byte == 0x0d { return false }
        return true
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
