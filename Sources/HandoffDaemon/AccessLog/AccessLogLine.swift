import HandoffRequest
import HandoffSSE
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One access-log line in logfmt: `2026-12-01T13:56:46.123Z stream key=value key="a value" …`,
/// built as bytes (a line per stream, so no `String` work on the loop).
///
/// A value that is not a plain token is quoted; inside quotes `"` and `\` are escaped and every
/// control character (C0, DEL, C1, U+2028/2029) is written as `\n`, `\r`, `\t` or `\u{XX}`, so
/// no field can end the line or forge another.
struct AccessLogLine {
    private(set) var bytes = ByteBuffer()

    /// The line as text (tests).
    var text: String { String(buffer: self.bytes) }

    init(seconds: Int, nanoseconds: Int) {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        self.bytes.reserveCapacity(320)
        self.appendDigits(Int(parts.tm_year) + 1900, width: 4)
        self.bytes.writeInteger(UInt8(ascii: "-"))
        self.appendDigits(Int(parts.tm_mon) + 1, width: 2)
        self.bytes.writeInteger(UInt8(ascii: "-"))
        self.appendDigits(Int(parts.tm_mday), width: 2)
        self.bytes.writeInteger(UInt8(ascii: "T"))
        self.appendDigits(Int(parts.tm_hour), width: 2)
        self.bytes.writeInteger(UInt8(ascii: ":"))
        self.appendDigits(Int(parts.tm_min), width: 2)
        self.bytes.writeInteger(UInt8(ascii: ":"))
        self.appendDigits(Int(parts.tm_sec), width: 2)
        self.bytes.writeInteger(UInt8(ascii: "."))
        self.appendDigits(nanoseconds / 1_000_000, width: 3)
        self.bytes.writeStaticString("Z stream")
    }

    /// Appends ` key=value`; nothing when `value` is `nil`.
    mutating func append(_ key: StaticString, _ text: String?) {
        guard var value = text else { return }
        self.appendKey(key)
        let plain = !value.isEmpty && value.withUTF8 { utf8 in
            guard utf8.allSatisfy(Self.isPlain) else { return false }
            self.bytes.writeBytes(utf8)
            return true
        }
        guard !plain else { return }
        self.bytes.writeInteger(UInt8(ascii: "\""))
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": self.bytes.writeString(#"\""#)
            case "\\": self.bytes.writeString(#"\\"#)
            case "\n": self.bytes.writeString(#"\n"#)
            case "\r": self.bytes.writeString(#"\r"#)
            case "\t": self.bytes.writeString(#"\t"#)
            case _ where scalar.isControlCharacter:
                self.bytes.writeString(#"\u{"#)
                self.bytes.writeString(String(scalar.value, radix: 16))
                self.bytes.writeInteger(UInt8(ascii: "}"))
            default: self.bytes.writeString(String(scalar))
            }
        }
        self.bytes.writeInteger(UInt8(ascii: "\""))
    }

    /// Appends ` key=<integer>`.
    mutating func append(_ key: StaticString, integer value: Int64) {
        self.appendKey(key)
        if value < 0 { self.bytes.writeInteger(UInt8(ascii: "-")) }
        self.appendDigits(value.magnitude, width: 1)
    }

    /// Appends ` key=<milliseconds>` from microseconds, as the shortest decimal with at least
    /// one fractional digit (`12.345`, `12.3`, `12.0`).
    mutating func append(_ key: StaticString, millisecondsFromMicroseconds microseconds: Int64) {
        self.appendKey(key)
        if microseconds < 0 { self.bytes.writeInteger(UInt8(ascii: "-")) }
        let magnitude = microseconds.magnitude
        self.appendDigits(magnitude / 1000, width: 1)
        self.bytes.writeInteger(UInt8(ascii: "."))
        var fraction = magnitude % 1000
        var width = 3
        while width > 1, fraction % 10 == 0 {
            fraction /= 10
            width -= 1
        }
        self.appendDigits(fraction, width: width)
    }

    private mutating func appendKey(_ key: StaticString) {
        self.bytes.writeInteger(UInt8(ascii: " "))
        self.bytes.writeStaticString(key)
        self.bytes.writeInteger(UInt8(ascii: "="))
    }

    /// `value` (not negative) in decimal, zero-padded to `width` digits.
    private mutating func appendDigits<Value: BinaryInteger>(_ value: Value, width: Int) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        for _ in digits..<max(digits, width) { self.bytes.writeInteger(UInt8(ascii: "0")) }
        self.bytes.writeDecimal(Int64(value))
    }

    private static func isPlain(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "@"), UInt8(ascii: "+"):
            true
        default: false
        }
    }
}
