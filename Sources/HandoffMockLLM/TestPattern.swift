/// What a request's `X-Test-Pattern` header asks the mock to do. Several patterns may be
/// combined with commas (`unicode,crlf`); the first fault pattern wins.
public struct TestPattern: Sendable, Equatable {
    /// Content chunk shapes.
    public enum Content: Sendable, Equatable {
        /// `Mock token N ` chunks.
        case plain
        /// Emoji, CJK and 4-byte characters.
        case unicode
        /// One-character chunks.
        case short
        /// 4 KiB chunks.
        case long
        /// One chunk: the request's `messages`, as compact JSON (to check what a client sent).
        case echo
    }

    /// A fault to inject.
    public enum Fault: Sendable, Equatable {
        /// `N` content chunks, then the body ends cleanly without a finish chunk or `[DONE]`.
        case abort(after: Int)
        /// Answer with this status and a JSON error (with `Retry-After` for 429 and 503: 7
        /// seconds, or an HTTP-date with `retry-date`).
        case status(Int)
        /// Wait this many milliseconds before the response head.
        case stall(milliseconds: Int)
        /// `N` content chunks, then silence until the client goes away.
        case hang(after: Int)
        /// `N` content chunks, then reset the stream (RST_STREAM, or a TCP reset on HTTP/1.1).
        case reset(after: Int)
        /// A data line that is not JSON after the first chunk.
        case malformed
        /// HTTP/2: the head declares `content-length: 1`, then the stream sends far more (a
        /// stream-level protocol error for the client, on that stream alone).
        case overlong
        /// HTTP/2: the first request carrying this token is refused with
        /// `RST_STREAM(REFUSED_STREAM)` before any response; later ones are served.
        case refuseOnce(token: String)
        /// HTTP/2: the first request carrying this token gets a GOAWAY whose last stream id is
        /// below its own (the server will not process it); later ones are served.
        case goAwayRefuseOnce(token: String)
        /// HTTP/2: `N` chunks, then a graceful GOAWAY: streams already open finish, new ones
        /// must go to another connection.
        case goAway(after: Int)
    }

    public var content: Content = .plain
    public var fault: Fault?
    /// The finish reason in the last chunk.
    public var finishReason = "stop"
    /// CRLF line endings instead of LF.
    public var crlf = false
    /// Each event's JSON split over two `data:` lines.
    public var multiline = false
    /// A comment line before every event.
    public var comments = false
    /// `Retry-After` of a 429/503 as an HTTP-date (``retryAfterDate``) instead of seconds.
    public var retryAfterAsDate = false
    /// The HTTP-date sent with `retry-date`.
    public static let retryAfterDate = "Wed, 21 Oct 2026 07:28:00 GMT"
    /// The pattern as the client sent it, for statistics.
    public var name = "default"

    public init() {}

    /// Parses the header value; unknown names are ignored so real clients are unaffected.
    public init(header: String?) {
        guard let header, !header.isEmpty else { return }
        self.name = header
        for item in header.split(separator: ",").map({ $0.trimmingCharactersInSet() }) {
            let parts = item.split(separator: ":", maxSplits: 1).map(String.init)
            let argument = parts.count > 1 ? parts[1] : nil
            let number = argument.flatMap { Int($0) }.map { max(0, $0) }
            switch parts[0] {
            case "unicode": self.content = .unicode
            case "short": self.content = .short
            case "long": self.content = .long
            case "echo": self.content = .echo
            case "crlf": self.crlf = true
            case "multiline": self.multiline = true
            case "comments": self.comments = true
            case "retry-date": self.retryAfterAsDate = true
            case "finish": self.finishReason = argument ?? "stop"
            case "malformed": self.fault = self.fault ?? .malformed
            case "abort": self.fault = self.fault ?? .abort(after: number ?? 1)
            case "status": self.fault = self.fault ?? .status(number ?? 500)
            case "stall": self.fault = self.fault ?? .stall(milliseconds: number ?? 1000)
            case "hang": self.fault = self.fault ?? .hang(after: number ?? 1)
            case "reset": self.fault = self.fault ?? .reset(after: number ?? 1)
            case "overlong": self.fault = self.fault ?? .overlong
            case "refuse-once": self.fault = self.fault ?? .refuseOnce(token: argument ?? "")
            case "goaway-refuse-once": self.fault = self.fault ?? .goAwayRefuseOnce(token: argument ?? "")
            case "goaway": self.fault = self.fault ?? .goAway(after: number ?? 1)
            default: continue
            }
        }
    }

    /// The text of content chunk `index` (0-based).
    public func chunk(_ index: Int) -> String {
        switch self.content {
        case .plain:
            return "Mock token \(index + 1) "
        case .unicode:
            let samples = ["Grüße ", "世界 ", "😀 ", "𝄞 ", "مرحبا ", "👩‍👩‍👧 ", "日本語 ", "🚀 "]
            return samples[index % samples.count]
        case .short:
            let letters = Array("abcdefghijklmnopqrstuvwxyz")
            return String(letters[index % letters.count])
        case .echo:
            return "(echo)"
        case .long:
            let line = "0123456789abcdef"
            return String(repeating: line, count: 4096 / line.count - 1) + chunkTag(index)
        }
    }
}

/// A 16-character tag ending in `index`, so long chunks differ from each other.
private func chunkTag(_ index: Int) -> String {
    let digits = String(index)
    return String(repeating: "-", count: max(0, 16 - digits.count)) + digits
}

extension Substring {
    fileprivate func trimmingCharactersInSet() -> String {
        String(self.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
