public import NIOCore

extension ByteBuffer {
    /// Appends `string` as a JSON string literal (RFC 8259): quoted, with `"`, `\` and every
    /// control character escaped. U+2028 and U+2029 are escaped too, so the output is also
    /// safe to embed in JavaScript. Returns the number of bytes written.
    @discardableResult
    public mutating func writeJSONString(_ string: String) -> Int {
        var string = string
        string.makeContiguousUTF8()
        return string.utf8.withContiguousStorageIfAvailable { self.writeJSONString(utf8: $0) }!
    }

    private mutating func writeJSONString(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Int {
        let start = self.writerIndex
        self.writeInteger(UInt8(ascii: "\""))
        var runStart = 0
        var index = 0
        // Copy runs of bytes that need no escaping in one go.
        while index < bytes.count {
            let byte = bytes[index]
            let escapeLength: Int
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x00..<0x20:
                escapeLength = 1
            case 0xE2 where index + 2 < bytes.count && bytes[index + 1] == 0x80 && (bytes[index + 2] & 0xFE) == 0xA8:
                escapeLength = 3
            default:
                index += 1
                continue
            }
            self.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart..<index])))
            self.writeEscape(for: bytes[index + escapeLength - 1], multiByte: escapeLength == 3)
            index += escapeLength
            runStart = index
        }
        self.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count])))
        self.writeInteger(UInt8(ascii: "\""))
        return self.writerIndex - start
    }

    private mutating func writeEscape(for byte: UInt8, multiByte: Bool) {
        if multiByte {
            self.writeStaticString(byte == 0xA8 ? "\\u2028" : "\\u2029")
            return
        }
        switch byte {
        case UInt8(ascii: "\""): self.writeStaticString("\\\"")
        case UInt8(ascii: "\\"): self.writeStaticString("\\\\")
        case 0x0A: self.writeStaticString("\\n")
        case 0x0D: self.writeStaticString("\\r")
        case 0x09: self.writeStaticString("\\t")
        case 0x08: self.writeStaticString("\\b")
        case 0x0C: self.writeStaticString("\\f")
        default:
            let hex: StaticString = "0123456789abcdef"
            self.writeStaticString("\\u00")
            self.writeInteger(hex.utf8Start[Int(byte >> 4)])
            self.writeInteger(hex.utf8Start[Int(byte & 0x0F)])
        }
    }
}
