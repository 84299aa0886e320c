public import NIOCore
import HandoffSSE
public import HandoffRequest

/// The bytes of every HTTP/1.1 response head and error response handoffd writes.
public enum HTTPResponse {
    /// Status line and fixed headers of a stream, without the terminating blank line.
    static let streamHeadPrefix = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\nX-Accel-Buffering: no\r\n"

    /// The whole head of a stream with no extra headers, shared by every such stream.
    public static let plainStreamHead: ByteBuffer = {
        var buffer = ByteBufferAllocator().buffer(capacity: streamHeadPrefix.utf8.count + 2)
        buffer.writeString(streamHeadPrefix)
        buffer.writeStaticString("\r\n")
        return buffer
    }()

    /// `: ping` and its blank line, shared.
    public static let pingComment: ByteBuffer = {
        var buffer = ByteBufferAllocator().buffer(capacity: 8)
        buffer.writeStaticString(HandoffEvents.ping)
        return buffer
    }()

    /// The head of a stream: the fixed headers, then `extraHeaders` (already filtered), then
    /// the blank line.
    public static func streamHead(extraHeaders: [HandoffRequest.ResponseHeader], allocator: ByteBufferAllocator) -> ByteBuffer {
        if extraHeaders.isEmpty { return Self.plainStreamHead }
        var buffer = allocator.buffer(capacity: 256)
        buffer.writeString(Self.streamHeadPrefix)
        for header in extraHeaders {
            buffer.writeString(header.name)
            buffer.writeStaticString(": ")
            buffer.writeString(header.value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
        return buffer
    }

    /// A complete error response with a small JSON body, `Content-Length` and
    /// `Connection: close`: `{"error":"<code>","message":"<message>"}`.
    ///
    /// - Parameters:
    ///   - status: the status line's code and reason.
    ///   - error: a stable machine-readable code, e.g. `invalid_json`.
    ///   - message: a human-readable explanation, safe to show the client.
    ///   - retryAfter: adds `Retry-After` when given.
    ///   - upstreamStatus: adds `"upstream_status"` to the body when the upstream answered an error.
    public static func error(
        _ status: HTTPStatus,
        error: String,
        message: String,
        retryAfter: RetryAfter? = nil,
        upstreamStatus: Int? = nil,
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        if status.code == 204 {
            // No body may follow a 204; the code still tells a log reader what happened.
            var buffer = allocator.buffer(capacity: 128)
            buffer.writeString("HTTP/1.1 204 No Content\r\nX-Handoff-Error: \(error)\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
            return buffer
        }
        var body = allocator.buffer(capacity: 64 + message.utf8.count)
        body.writeStaticString("{\"error\":")
        body.writeJSONString(error)
        body.writeStaticString(",\"message\":")
        body.writeJSONString(message)
        if let upstreamStatus {
            body.writeString(",\"upstream_status\":\(upstreamStatus)")
        }
        body.writeStaticString("}\n")
        var buffer = allocator.buffer(capacity: 160 + body.readableBytes)
        buffer.writeString("HTTP/1.1 \(status.code) \(status.reason)\r\n")
        buffer.writeStaticString("Content-Type: application/json\r\n")
        buffer.writeString("Content-Length: \(body.readableBytes)\r\n")
        if let retryAfter {
            buffer.writeString("Retry-After: \(retryAfter.value)\r\n")
        }
        buffer.writeStaticString("Cache-Control: no-store\r\nConnection: close\r\n\r\n")
        buffer.writeImmutableBuffer(body)
        return buffer
    }
}
