import Foundation
public import HandoffSSE

/// An HTTP/1.1 response as a client received it, split for assertions.
public struct ReceivedResponse: Sendable {
    /// The status code from the status line.
    public var status: Int
    /// The whole status line, e.g. `HTTP/1.1 200 OK`.
    public var statusLine: String
    /// Header fields in order, names as sent.
    public var headers: [(name: String, value: String)]
    /// Everything after the blank line.
    public var body: String

    /// Parses `bytes`; `nil` when there is no complete head.
    public init?(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { return nil }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        guard let first = lines.first, first.hasPrefix("HTTP/1.1 "), first.count >= 12, let status = Int(first.dropFirst(9).prefix(3)) else {
            return nil
        }
        self.status = status
        self.statusLine = first
        self.headers = lines.dropFirst().compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        self.body = String(text[split.upperBound...])
    }

    /// The value of the first header named `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        self.headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The body's events, parsed as a browser would (`nil` if the body breaks the parser's bounds).
    public var events: [SSEEvent]? {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        do {
            try parser.feed(Array(self.body.utf8)) { events.append($0) }
        } catch {
            return nil
        }
        return events
    }

    /// The body's Server-Sent Events as raw blocks (text between blank lines).
    public var eventBlocks: [String] {
        self.body.components(separatedBy: "\n\n").filter { !$0.isEmpty }
    }
}
