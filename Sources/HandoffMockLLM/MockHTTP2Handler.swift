import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// Serves one HTTP/2 connection at the frame level, after NIOHTTP2's handler: no channel per
/// stream, so a chunk costs one frame written on the connection (and one flush, as a server
/// that answers as tokens come would). Each request becomes a ``MockExchange`` answering
/// through its stream's ``MockHTTP2StreamWriter``. Loop-bound.
final class MockHTTP2Handler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let configuration: MockLLMConfiguration
    private let stats: MockStats
    private var streams: [HTTP2StreamID: MockHTTP2StreamWriter] = [:]
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE and the connection's send window, tracked so a
    /// stream waits (bounded memory) when its reader stops giving window back.
    private var initialWindow = 65_535
    private var connectionWindow = 65_535
    private var context: ChannelHandlerContext?
    /// Request body bytes received since the connection's last WINDOW_UPDATE.
    private var receivedUnacknowledged = 0
    private static let windowUpdateThreshold = 16_384

    init(configuration: MockLLMConfiguration, stats: MockStats) {
        self.configuration = configuration
        self.stats = stats
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        let id = frame.streamID
        switch frame.payload {
        case .headers(let headers):
            if let stream = self.streams[id] {
                if headers.endStream { stream.requestEnded() }  // trailers
            } else {
                let stream = MockHTTP2StreamWriter(id: id, connection: self, window: self.initialWindow, headers: headers.headers, allocator: context.channel.allocator, eventLoop: context.eventLoop)
                self.streams[id] = stream
                if headers.endStream { stream.requestEnded() }
            }
        case .data(let data):
            guard case .byteBuffer(let bytes) = data.data else { return }
            // The request body's windows, given back as it is read: the connection's in batches
            // (for every stream, answered or not), the stream's at once while it is open.
            var wrote = false
            self.receivedUnacknowledged += bytes.readableBytes
            if self.receivedUnacknowledged >= Self.windowUpdateThreshold {
                self.write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: self.receivedUnacknowledged)))
                self.receivedUnacknowledged = 0
                wrote = true
            }
            if let stream = self.streams[id] {
                if !data.endStream, bytes.readableBytes > 0 {
                    self.write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: bytes.readableBytes)))
                    wrote = true
                }
                if !stream.received(bytes) {
                    stream.exchange(configuration: self.configuration, stats: self.stats).respond(status: 413, json: #"{"error":{"message":"body too large"}}"#)
                } else if data.endStream {
                    stream.requestEnded()
                }
            }
            if wrote { context.flush() }
        case .windowUpdate(let increment):
            if id == .rootStream {
                self.connectionWindow += increment
                for stream in self.streams.values { stream.windowOpened() }
            } else {
                self.streams[id]?.windowUpdated(by: increment)
            }
        case .settings(.settings(let settings)):
            guard let size = settings.last(where: { $0.parameter == .initialWindowSize })?.value else { return }
            let delta = size - self.initialWindow
            self.initialWindow = size
            for stream in self.streams.values { stream.windowUpdated(by: delta) }
        case .rstStream:
            self.streams.removeValue(forKey: id)?.cancel()
        case .goAway:
            self.stats.goAwayReceived()
        default:
            break
        }
        if let stream = self.streams[id], stream.requestComplete, !stream.served {
            stream.serve(configuration: self.configuration, stats: self.stats)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent {
            self.streams.removeValue(forKey: closed.streamID)?.cancel()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for stream in self.streams.values { stream.windowOpened() }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let open = self.streams
        self.streams.removeAll()
        for stream in open.values { stream.cancel() }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A stream's own error (NIOHTTP2 resets it) leaves the connection alone.
        if error is NIOHTTP2Errors.StreamError { return }
        context.close(promise: nil)
    }

    // MARK: For the streams

    func write(_ frame: HTTP2Frame) {
        self.context?.write(self.wrapOutboundOut(frame), promise: nil)
    }

    func flush() {
        self.context?.flush()
    }

    /// DATA of `bytes` went out: the connection's window shrinks with the stream's.
    func sent(_ bytes: Int) {
        self.connectionWindow -= bytes
    }

    var isWritable: Bool { self.connectionWindow > 0 && (self.context?.channel.isWritable ?? false) }

    /// The stream finished its response or was reset by us: nothing more arrives for it here.
    func forget(_ id: HTTP2StreamID) {
        self.streams.removeValue(forKey: id)
    }
}

/// One HTTP/2 stream of a ``MockHTTP2Handler``: collects its request, then answers it as a
/// ``MockResponseWriter``.
final class MockHTTP2StreamWriter: MockResponseWriter {
    private let id: HTTP2StreamID
    private unowned let connection: MockHTTP2Handler
    private let requestHeaders: HPACKHeaders
    private var body: ByteBuffer
    private var window: Int
    private var exchange: MockExchange?
    private(set) var requestComplete = false
    private(set) var served = false
    private var ended = false
    let allocator: ByteBufferAllocator
    let eventLoop: any EventLoop

    init(id: HTTP2StreamID, connection: MockHTTP2Handler, window: Int, headers: HPACKHeaders, allocator: ByteBufferAllocator, eventLoop: any EventLoop) {
        self.id = id
        self.eventLoop = eventLoop
        self.connection = connection
        self.window = window
        self.requestHeaders = headers
        self.allocator = allocator
        self.body = allocator.buffer(capacity: 0)
    }

    /// Request body bytes; `false` once the body is too large.
    func received(_ bytes: ByteBuffer) -> Bool {
        guard self.body.readableBytes + bytes.readableBytes <= MockExchange.maximumBodyBytes else {
            self.served = true
            return false
        }
        var bytes = bytes
        self.body.writeBuffer(&bytes)
        return true
    }

    func requestEnded() {
        self.requestComplete = true
    }

    func exchange(configuration: MockLLMConfiguration, stats: MockStats) -> MockExchange {
        if let exchange = self.exchange { return exchange }
        let exchange = MockExchange(configuration: configuration, stats: stats, writer: self)
        self.exchange = exchange
        return exchange
    }

    func serve(configuration: MockLLMConfiguration, stats: MockStats) {
        self.served = true
        var headers = HTTPHeaders()
        for field in self.requestHeaders where !field.name.hasPrefix(":") { headers.add(name: field.name, value: field.value) }
        let request = MockRequest(
            method: self.requestHeaders.first(name: ":method") ?? "GET",
            uri: self.requestHeaders.first(name: ":path") ?? "/",
            headers: headers,
            body: self.body
        )
        self.body = self.allocator.buffer(capacity: 0)
        self.exchange(configuration: configuration, stats: stats).serve(request)
    }

    func cancel() {
        self.ended = true
        self.exchange?.cancel()
        self.exchange = nil
    }

    func windowUpdated(by delta: Int) {
        self.window += delta
        self.windowOpened()
    }

    func windowOpened() {
        if self.isWritable { self.exchange?.resumeIfWaiting() }
    }

    // MARK: MockResponseWriter

    var isWritable: Bool { !self.ended && self.window > 0 && self.connection.isWritable }
    var http2StreamID: Int? { Int(self.id) }

    func writeHead(status: Int, headers: [(String, String)]) {
        guard !self.ended else { return }
        var fields = HPACKHeaders([(":status", String(status))])
        for (name, value) in headers { fields.add(name: name, value: value) }
        self.connection.write(HTTP2Frame(streamID: self.id, payload: .headers(.init(headers: fields))))
    }

    func writeBody(_ buffer: ByteBuffer) {
        guard !self.ended else { return }
        self.window -= buffer.readableBytes
        self.connection.sent(buffer.readableBytes)
        self.connection.write(HTTP2Frame(streamID: self.id, payload: .data(.init(data: .byteBuffer(buffer)))))
    }

    func flush() {
        self.connection.flush()
    }

    func end() {
        guard !self.ended else { return }
        self.ended = true
        self.exchange = nil  // it held this writer: no cycle outlives the stream
        self.connection.forget(self.id)
        self.connection.write(HTTP2Frame(streamID: self.id, payload: .data(.init(data: .byteBuffer(self.allocator.buffer(capacity: 0)), endStream: true))))
        self.connection.flush()
    }

    func reset() {
        self.rst(.cancel)
    }

    func refuse() {
        self.rst(.refusedStream)
    }

    private func rst(_ code: HTTP2ErrorCode) {
        guard !self.ended else { return }
        self.ended = true
        self.exchange = nil
        self.connection.forget(self.id)
        self.connection.write(HTTP2Frame(streamID: self.id, payload: .rstStream(code)))
        self.connection.flush()
    }

    func goAway(lastStreamID: Int) {
        let last = HTTP2StreamID(min(lastStreamID, Int(Int32.max)))
        self.connection.write(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: last, errorCode: .noError, opaqueData: nil)))
        self.connection.flush()
    }
}
