import HandoffRequest

#if canImport(Glibc)
import Glibc
#endif

/// One access-log line in logfmt: `2026-12-01T13:56:46.123Z stream key=value key="a value" …`.
///
/// A value that is not a plain token is quoted; inside quotes `"` and `\` are escaped and every
/// control character (C0, DEL, C1, U+2028/2029) is written as `\n`, `\r`, `\t` or `\u{XX}`, so
/// no field can end the line or forge another.
struct AccessLogLine {
    private(set) var text: String

    init(seconds: Int, nanoseconds: Int) {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let milliseconds = nanoseconds / 1_000_000
        let fraction = milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
        self.text = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z stream"
    }

    /// Appends ` key=value`; nothing when `value` is `nil`.
    mutating func append(_ key: String, _ value: String?) {
        guard let value else { return }
        self.text += " \(key)="
        if !value.isEmpty, value.unicodeScalars.allSatisfy(Self.isPlain) {
            self.text += value
            return
        }
        self.text += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": self.text += "\\\""
            case "\\": self.text += "\\\\"
            case "\n": self.text += "\\n"
            case "\r": self.text += "\\r"
            case "\t": self.text += "\\t"
            case _ where scalar.isControlCharacter: self.text += "\\u{\(String(scalar.value, radix: 16))}"
            default: self.text.unicodeScalars.append(scalar)
            }
        }
        self.text += "\""
    }

    private static func isPlain(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", "-", "_", ".", ":", "/", "@", "+": true
        default: false
        }
    }
}
