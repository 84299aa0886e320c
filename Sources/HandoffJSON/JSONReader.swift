/// A strict pull reader over one JSON text in memory (RFC 8259), for hot paths that know the
/// shape they expect: it reads the members they want and skips the rest, building no tree and
/// allocating only the strings it returns.
///
///     var reader = JSONReader(bytes)
///     try reader.readObject { reader, key in
///         if key == "content" { text = try reader.readStringOrNull() } else { try reader.skipValue() }
///     }
///     try reader.finish()
///
/// It accepts exactly RFC 8259 (no comments, no trailing commas, no leading zeros, no raw
/// control characters in strings) and throws on anything else, including what it does not
/// handle on purpose: nesting deeper than `maximumDepth`, and `\u` escapes that are lone
/// surrogates. Callers with a general decoder fall back to it on any error, so the general
/// decoder stays the authority on unusual input and this reader only has to be right about
/// ordinary input. Strings must be well-formed UTF-8 (checked only where a byte is not ASCII).
public struct JSONReader {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private var depth = 0
    /// The deepest nesting of arrays and objects accepted.
    public let maximumDepth: Int

    /// Where the reader is, in bytes from the start (after any whitespace it already skipped):
    /// with ``skipValue()`` it gives a value's raw text.
    public var offset: Int { self.index }

    /// A reader over `bytes`, which must outlive it.
    public init(_ bytes: UnsafeRawBufferPointer, maximumDepth: Int = 64) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    /// The kind of the next value.
    public enum Kind: Equatable, Sendable {
        case object, array, string, number, bool, null
    }

    /// The kind of the next value, without consuming it.
    public mutating func peek() throws(JSONReaderError) -> Kind {
        self.skipWhitespace()
        guard self.index < self.bytes.count else { throw self.error(.unexpectedEnd) }
        switch self.bytes[self.index] {
        case .openBrace: return .object
        case .openBracket: return .array
        case .quote: return .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        default: throw self.error(.syntax)
        }
    }

    /// Reads an object, calling `member` with each key; `member` must read or skip its value.
    public mutating func readObject(_ member: (inout JSONReader, JSONKey) throws(JSONReaderError) -> Void) throws(JSONReaderError) {
        try self.enter(.openBrace)
        self.skipWhitespace()
        if self.consume(.closeBrace) {
            self.depth -= 1
            return
        }
        while true {
            self.skipWhitespace()
            guard self.peekByte() == .quote else { throw self.error(.syntax) }
            let key = try self.scanString()
            self.skipWhitespace()
            guard self.consume(.colon) else { throw self.error(.syntax) }
            try member(&self, key)
            self.skipWhitespace()
            if self.consume(.comma) { continue }
            guard self.consume(.closeBrace) else { throw self.error(.syntax) }
            self.depth -= 1
            return
        }
    }

    /// Reads an array, calling `element` with each index; `element` must read or skip the value.
    public mutating func readArray(_ element: (inout JSONReader, Int) throws(JSONReaderError) -> Void) throws(JSONReaderError) {
        try self.enter(.openBracket)
        self.skipWhitespace()
        if self.consume(.closeBracket) {
            self.depth -= 1
            return
        }
        var position = 0
        while true {
            try element(&self, position)
            position += 1
            self.skipWhitespace()
            if self.consume(.comma) { continue }
            guard self.consume(.closeBracket) else { throw self.error(.syntax) }
            self.depth -= 1
            return
        }
    }

    /// Consumes `null` if it is next; returns whether it was.
    public mutating func readNull() throws(JSONReaderError) -> Bool {
        guard try self.peek() == .null else { return false }
        try self.literal("null")
        return true
    }

    /// Reads a string.
    public mutating func readString() throws(JSONReaderError) -> String {
        guard try self.peek() == .string else { throw self.error(.typeMismatch) }
        return try self.scanString().decoded()
    }

    /// Reads a string or `null`.
    public mutating func readStringOrNull() throws(JSONReaderError) -> String? {
        try self.readNull() ? nil : try self.readString()
    }

    /// Reads an integer written without fraction or exponent that fits in `Int`; anything else
    /// throws (`typeMismatch` for other numbers, which a general decoder may still accept).
    public mutating func readInt() throws(JSONReaderError) -> Int {
        guard try self.peek() == .number else { throw self.error(.typeMismatch) }
        let start = self.index
        try self.scanNumber()
        var position = start
        let negative = self.bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        var value = 0
        while position < self.index {
            let byte = self.bytes[position]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { throw self.error(.typeMismatch) }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let digit = Int(byte &- UInt8(ascii: "0"))
            let (next, overflow2) = negative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            guard !overflow1, !overflow2 else { throw self.error(.typeMismatch) }
            value = next
            position += 1
        }
        return value
    }

    /// Reads a number's text as written (`-2.5e+3`), for the caller to convert.
    public mutating func readNumberText() throws(JSONReaderError) -> Substring {
        guard try self.peek() == .number else { throw self.error(.typeMismatch) }
        let start = self.index
        try self.scanNumber()
        return Substring(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index]), as: UTF8.self)
    }

    /// Reads an integer or `null`.
    public mutating func readIntOrNull() throws(JSONReaderError) -> Int? {
        try self.readNull() ? nil : try self.readInt()
    }

    /// Reads `true` or `false`.
    public mutating func readBool() throws(JSONReaderError) -> Bool {
        guard try self.peek() == .bool else { throw self.error(.typeMismatch) }
        if self.bytes[self.index] == UInt8(ascii: "t") {
            try self.literal("true")
            return true
        }
        try self.literal("false")
        return false
    }

    /// Skips the next value, checking its syntax.
    public mutating func skipValue() throws(JSONReaderError) {
        switch try self.peek() {
        case .object: try self.readObject { reader, _ throws(JSONReaderError) in try reader.skipValue() }
        case .array: try self.readArray { reader, _ throws(JSONReaderError) in try reader.skipValue() }
        case .string: _ = try self.scanString()
        case .number: try self.scanNumber()
        case .bool: _ = try self.readBool()
        case .null: try self.literal("null")
        }
    }

    /// Checks that nothing but whitespace follows.
    public mutating func finish() throws(JSONReaderError) {
        self.skipWhitespace()
        guard self.index == self.bytes.count else { throw self.error(.syntax) }
    }

    // MARK: Scanning

    private mutating func enter(_ opening: UInt8) throws(JSONReaderError) {
        self.skipWhitespace()
        guard self.consume(opening) else { throw self.error(.typeMismatch) }
        self.depth += 1
        guard self.depth <= self.maximumDepth else { throw self.error(.tooDeep) }
    }

    /// Scans a string starting at its opening quote; returns its raw contents.
    private mutating func scanString() throws(JSONReaderError) -> JSONKey {
        self.index += 1
        let start = self.index
        var escaped = false
        while self.index < self.bytes.count {
            // Runs of plain ASCII (most of every string) in a local index, one compare per byte.
            var plain = self.index
            while plain < self.bytes.count {
                let byte = self.bytes[plain]
                guard byte >= 0x20, byte < 0x80, byte != .quote, byte != .backslash else { break }
                plain += 1
            }
            self.index = plain
            guard plain < self.bytes.count else { break }
            let byte = self.bytes[plain]
            if byte == .quote {
                let raw = UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index])
                self.index += 1
                return JSONKey(raw: raw, escaped: escaped)
            }
            if byte < 0x20 { throw self.error(.syntax) }
            if byte >= 0x80 {
                self.index += try self.utf8SequenceLength()
                continue
            }
            if byte == .backslash {
                escaped = true
                self.index += 1
                guard self.index < self.bytes.count else { break }
                switch self.bytes[self.index] {
                case .quote, .backslash, UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                case UInt8(ascii: "u"):
                    guard self.index + 4 < self.bytes.count else { throw self.error(.unexpectedEnd) }
                    for offset in 1...4 where JSONKey.hexValue(self.bytes[self.index + offset]) == nil {
                        throw self.error(.syntax)
                    }
                    self.index += 4
                default:
                    throw self.error(.syntax)
                }
            }
            self.index += 1
        }
        throw self.error(.unexpectedEnd)
    }

    /// The length of the well-formed UTF-8 sequence at `index` (Unicode 15, table 3-7).
    private func utf8SequenceLength() throws(JSONReaderError) -> Int {
        let lead = self.bytes[self.index]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: (length, low) = (3, 0xA0)
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: (length, high) = (3, 0x9F)
        case 0xF0: (length, low) = (4, 0x90)
        case 0xF1...0xF3: length = 4
        case 0xF4: (length, high) = (4, 0x8F)
        default: throw self.error(.invalidUTF8)
        }
        guard self.index + length <= self.bytes.count else { throw self.error(.invalidUTF8) }
        let second = self.bytes[self.index + 1]
        guard second >= low, second <= high else { throw self.error(.invalidUTF8) }
        for offset in 2..<length where self.bytes[self.index + offset] & 0xC0 != 0x80 {
            throw self.error(.invalidUTF8)
        }
        return length
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    private mutating func scanNumber() throws(JSONReaderError) {
        if self.peekByte() == UInt8(ascii: "-") { self.index += 1 }
        guard let first = self.peekByte(), first.isDigit else { throw self.error(.syntax) }
        self.index += 1
        if first != UInt8(ascii: "0") { self.skipDigits() }
        if self.peekByte() == UInt8(ascii: ".") {
            self.index += 1
            guard self.peekByte()?.isDigit == true else { throw self.error(.syntax) }
            self.skipDigits()
        }
        if let byte = self.peekByte(), byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
            self.index += 1
            if let sign = self.peekByte(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { self.index += 1 }
            guard self.peekByte()?.isDigit == true else { throw self.error(.syntax) }
            self.skipDigits()
        }
    }

    private mutating func skipDigits() {
        while self.index < self.bytes.count, self.bytes[self.index].isDigit { self.index += 1 }
    }

    private mutating func literal(_ word: StaticString) throws(JSONReaderError) {
        let count = word.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count else { throw self.error(.unexpectedEnd) }
        for offset in 0..<count where self.bytes[self.index + offset] != word.utf8Start[offset] {
            throw self.error(.syntax)
        }
        self.index += count
    }

    private mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x0A, 0x0D, 0x09: self.index += 1
            default: return
            }
        }
    }

    private func peekByte() -> UInt8? {
        self.index < self.bytes.count ? self.bytes[self.index] : nil
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard self.index < self.bytes.count, self.bytes[self.index] == byte else { return false }
        self.index += 1
        return true
    }

    private func error(_ reason: JSONReaderError.Reason) -> JSONReaderError {
        JSONReaderError(reason: reason, offset: self.index)
    }
}

extension UInt8 {
    fileprivate static let quote = UInt8(ascii: "\"")
    fileprivate static let backslash = UInt8(ascii: "\\")
    fileprivate static let openBrace = UInt8(ascii: "{")
    fileprivate static let closeBrace = UInt8(ascii: "}")
    fileprivate static let openBracket = UInt8(ascii: "[")
    fileprivate static let closeBracket = UInt8(ascii: "]")
    fileprivate static let colon = UInt8(ascii: ":")
    fileprivate static let comma = UInt8(ascii: ",")

    fileprivate var isDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
}
