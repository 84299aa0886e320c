public import NIOCore

/// The events handoffd sends to clients: the stream's contract with browsers, the load
/// generator and the conformance runner.
///
///     data: {"content":"…"}                        one per content delta
///     data: [DONE]                                 only when the upstream really finished
///     event: error
///     data: {"error":"…","reason":"…"}             a stream that ended early; no [DONE] follows
///     : ping                                       keep-alive during upstream silence
public enum HandoffEvents {
    /// `data: [DONE]` and its blank line.
    public static let done: StaticString = "data: [DONE]\n\n"
    /// The keep-alive comment.
    public static let ping: StaticString = ": ping\n\n"

    /// Appends `data: {"content":"…"}` with `content` JSON-encoded.
    public static func writeContent(_ content: String, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("data: {\"content\":")
        buffer.writeJSONString(content)
        buffer.writeStaticString("}\n\n")
    }

    /// Appends `event: error` with `data: {"error":"…","reason":"…"}`.
    public static func writeError(_ message: String, reason: String, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("event: error\ndata: {\"error\":")
        buffer.writeJSONString(message)
        buffer.writeStaticString(",\"reason\":")
        buffer.writeJSONString(reason)
        buffer.writeStaticString("}\n\n")
    }

    /// Appends `data: [DONE]`.
    public static func writeDone(into buffer: inout ByteBuffer) {
        buffer.writeStaticString(Self.done)
    }
}

extension ByteBuffer {
    /// Appends `value` in decimal without making a String (event ids on the per-event path).
    public mutating func writeDecimal(_ value: Int64) {
        if value < 0 {
            self.writeString(String(value))
            return
        }
        if value < 10 {
            self.writeInteger(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 19 digits
        withUnsafeMutableBytes(of: &digits) { raw in
            var rest = value
            var index = raw.count
            while rest > 0 {
                index -= 1
                raw[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            self.writeBytes(UnsafeRawBufferPointer(rebasing: raw[index...]))
        }
    }
}
