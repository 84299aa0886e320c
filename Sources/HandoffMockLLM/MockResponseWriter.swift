import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#endif

/// Where a mock response goes: an HTTP/1.1 connection or one HTTP/2 stream. Loop-bound.
protocol MockResponseWriter: AnyObject {
    var eventLoop: any EventLoop { get }
    var allocator: ByteBufferAllocator { get }
    /// Whether the reader takes more now (HTTP/2: the stream's window is open; HTTP/1.1: the
    /// socket is writable). When it becomes writable again the writer calls its stream's
    /// ``MockCompletionStream/resumeIfWaiting()``.
    var isWritable: Bool { get }
    /// The HTTP/2 stream id; `nil` on HTTP/1.1.
    var http2StreamID: Int? { get }

    func writeHead(status: Int, headers: [(String, String)])
    func writeBody(_ buffer: ByteBuffer)
    func flush()
    /// The end of the body (and, on HTTP/1.1 without keep-alive, of the connection).
    func end()
    /// RST_STREAM(CANCEL) on HTTP/2; a TCP reset on HTTP/1.1.
    func reset()
    /// RST_STREAM(REFUSED_STREAM) before any response (HTTP/2 only).
    func refuse()
    /// A GOAWAY on the connection: streams above `lastStreamID` are not processed (HTTP/2 only).
    func goAway(lastStreamID: Int)
}

extension MockResponseWriter {
    /// A whole JSON response: head (with `headers` after the content type and length), body, end.
    func respond(status: Int, json body: [UInt8], headers: [(String, String)] = []) {
        self.writeHead(status: status, headers: [("content-type", "application/json"), ("content-length", String(body.count))] + headers)
        self.writeBody(self.allocator.buffer(bytes: body))
        self.end()
    }
}

/// A response on an HTTP/1.1 connection, through NIOHTTP1's server codec.
final class MockHTTP1ResponseWriter: MockResponseWriter {
    private let context: ChannelHandlerContext
    /// Whether the connection stays open after this response.
    private let keepAlive: Bool

    init(context: ChannelHandlerContext, keepAlive: Bool) {
        self.context = context
        self.keepAlive = keepAlive
    }

    var eventLoop: any EventLoop { self.context.eventLoop }
    var allocator: ByteBufferAllocator { self.context.channel.allocator }
    var isWritable: Bool { self.context.channel.isWritable }
    var http2StreamID: Int? { nil }

    func writeHead(status: Int, headers: [(String, String)]) {
        var fields = HTTPHeaders(headers)
        if !self.keepAlive { fields.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: fields)
        self.context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
    }

    func writeBody(_ buffer: ByteBuffer) {
        self.context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
    }

    func flush() {
        self.context.flush()
    }

    func end() {
        self.context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
        if !self.keepAlive { self.context.close(promise: nil) }
    }

    func reset() {
        self.context.flush()
        let channel = self.context.channel
        if let provider = channel as? any SocketOptionProvider {
            provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            channel.close(promise: nil)
        }
    }

    func refuse() {
        self.context.close(promise: nil)
    }

    func goAway(lastStreamID: Int) {}
}
