/// A string as it appears in the JSON text, between its quotes: compared without decoding
/// when it has no escapes (object keys almost never do), decoded on demand.
///
/// It points into the reader's bytes: use it inside the closure that received it.
public struct JSONKey {
    /// The bytes between the quotes, escapes as written.
    public let raw: UnsafeRawBufferPointer
    /// Whether `raw` contains a backslash escape.
    public let escaped: Bool

    /// Whether the key is `name`.
    public static func == (key: JSONKey, name: StaticString) -> Bool {
        guard !key.escaped else { return (try? key.decoded()) == name.description }
        guard key.raw.count == name.utf8CodeUnitCount else { return false }
        for offset in 0..<key.raw.count where key.raw[offset] != name.utf8Start[offset] {
            return false
        }
        return true
    }

    /// The string's value. Throws for a `\u` escape that is a lone surrogate, which has no
    /// Unicode value (general decoders differ on what to do with it).
    public func decoded() throws(JSONReaderError) -> String {
        guard self.escaped else { return String(decoding: self.raw, as: UTF8.self) }
        var utf8: [UInt8] = []
        utf8.reserveCapacity(self.raw.count)
        var index = 0
        while index < self.raw.count {
            let byte = self.raw[index]
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                index += 1
                continue
            }
            let kind = self.raw[index + 1]
            index += 2
            switch kind {
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = self.hex4(at: index)
                index += 4
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate must be followed by an escaped low one.
                    guard index + 6 <= self.raw.count, self.raw[index] == UInt8(ascii: "\\"), self.raw[index + 1] == UInt8(ascii: "u") else {
                        throw JSONReaderError(reason: .loneSurrogate, offset: index)
                    }
                    let low = self.hex4(at: index + 2)
                    guard (0xDC00..<0xE000).contains(low) else { throw JSONReaderError(reason: .loneSurrogate, offset: index) }
                    index += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw JSONReaderError(reason: .loneSurrogate, offset: index)
                }
                utf8.append(contentsOf: UTF8.encode(Unicode.Scalar(scalar)!)!)
            default: utf8.append(kind)  // \" \\ \/
            }
        }
        return String(decoding: utf8, as: UTF8.self)
    }

    private func hex4(at index: Int) -> UInt32 {
        var value: UInt32 = 0
        for offset in 0..<4 { value = value << 4 | UInt32(Self.hexValue(self.raw[index + offset])!) }
        return value
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Why a `JSONReader` stopped.
public struct JSONReaderError: Error, Equatable, Sendable {
    public enum Reason: Equatable, Sendable {
        /// Not JSON.
        case syntax
        /// The text ended inside a value.
        case unexpectedEnd
        /// A value of another type than the caller asked for.
        case typeMismatch
        /// Nesting deeper than the reader's `maximumDepth`.
        case tooDeep
        /// A `\u` escape that is half of a surrogate pair.
        case loneSurrogate
        /// A string that is not well-formed UTF-8.
        case invalidUTF8
        /// An object member the caller reads appeared twice (reported by callers).
        case repeatedMember
    }

    public var reason: Reason
    /// Byte offset in the text.
    public var offset: Int

    public init(reason: Reason, offset: Int) {
        self.reason = reason
        self.offset = offset
    }
}
