public import NIOCore

/// Writes Server-Sent Events (WHATWG HTML §9.2) into a `ByteBuffer`.
///
/// Every event ends with a blank line. Data containing line breaks (LF, CR or CRLF) becomes
/// several `data:` lines, which a conforming parser joins back with LF.
public enum SSEEncoder {
    /// Appends one event: an optional `event:` line, one `data:` line per line of `data`, an
    /// optional `id:` line, and the terminating blank line.
    public static func writeEvent(_ data: String, event: String? = nil, id: String? = nil, into buffer: inout ByteBuffer) {
        if let event {
            buffer.writeStaticString("event: ")
            buffer.writeString(Self.singleLine(event))
            buffer.writeStaticString("\n")
        }
        var lineStart = data.utf8.startIndex
        var index = lineStart
        let utf8 = data.utf8
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == 0x0A || byte == 0x0D {
                buffer.writeStaticString("data: ")
                buffer.writeBytes(utf8[lineStart..<index])
                buffer.writeStaticString("\n")
                var next = utf8.index(after: index)
                if byte == 0x0D, next != utf8.endIndex, utf8[next] == 0x0A { next = utf8.index(after: next) }
                index = next
                lineStart = next
            } else {
                index = utf8.index(after: index)
            }
        }
        buffer.writeStaticString("data: ")
        buffer.writeBytes(utf8[lineStart..<utf8.endIndex])
        buffer.writeStaticString("\n")
        if let id {
            buffer.writeStaticString("id: ")
            buffer.writeString(Self.singleLine(id))
            buffer.writeStaticString("\n")
        }
        buffer.writeStaticString("\n")
    }

    /// Appends a comment line (`: text`), which clients ignore; used as a keep-alive.
    public static func writeComment(_ text: String, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(": ")
        buffer.writeString(Self.singleLine(text))
        buffer.writeStaticString("\n\n")
    }

    /// Replaces line breaks, which would end a field early, with spaces.
    static func singleLine(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }) else { return text }
        return String(text.map { $0 == "\n" || $0 == "\r" || $0 == "\r\n" ? " " : $0 })
    }
}
