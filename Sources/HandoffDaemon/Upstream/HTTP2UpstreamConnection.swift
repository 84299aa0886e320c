import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// One HTTP/2 connection of a ``HTTP2ConnectionPool``: performs what its
/// ``HTTP2ConnectionStateMachine`` decides, and routes the frames of its streams.
///
/// Streams are not channels: NIOHTTP2's handler speaks frames with stream ids, and this class
/// hands each stream its frames, writes its request, gives back flow-control window as the
/// stream reads (``HTTP2InboundWindow``; a paused stream gets none, so its server stops), and
/// flushes once per event-loop tick however many streams wrote. Loop-bound.
final class HTTP2UpstreamConnection {
    private unowned let pool: HTTP2ConnectionPool
    private var machine: HTTP2ConnectionStateMachine
    private var channel: (any Channel)?
    private var pingTimer: Scheduled<Void>?
    private var streams: [HTTP2StreamID: Entry] = [:]
    private var nextStreamID = HTTP2StreamID(1)
    private var connectionWindow: HTTP2InboundWindow
    private var flushScheduled = false
    /// NIOHTTP2 reports a stream's own error on the connection's pipeline too, just before or
    /// just after that stream closes with an error code. So within one event-loop tick, a
    /// stream closed with an error excuses the error reported (`streamErrorThisTick`), and an
    /// error waits (`pendingError`) for the end of the tick before it fails the connection.
    private var pendingError: (any Error)?
    private var streamErrorThisTick = false

    private struct Entry {
        var stream: HTTP2UpstreamStream
        var window: HTTP2InboundWindow
    }

    init(pool: HTTP2ConnectionPool) {
        self.pool = pool
        self.machine = HTTP2ConnectionStateMachine(
            assumedStreams: HTTP2ConnectionPool.assumedStreamsPerConnection,
            resetBudget: pool.settings.resetBudget
        )
        // Room for every stream's window, so paused streams never starve the others.
        self.connectionWindow = HTTP2InboundWindow(size: min(Int(Int32.max), pool.settings.streamWindowBytes * 128))
    }

    /// The highest stream id a client may open (2^31 − 1, odd).
    static let lastClientStreamID = Int(Int32.max)

    /// The connection window every HTTP/2 connection starts with (RFC 9113 §6.9.2).
    private static let initialConnectionWindow = 65_535

    var isConnecting: Bool { self.machine.isConnecting }
    var canTakeStream: Bool { self.machine.canTakeStream }
    var activeStreams: Int { self.machine.activeStreams }
    /// Streams the server lets this connection run at once (assumed until its SETTINGS).
    var maxStreams: Int { self.machine.maxStreams }
    /// Streams it could take now.
    var room: Int { self.machine.room }

    /// Whether the server said (GOAWAY) it never processed stream `id`.
    func serverRefused(streamID id: Int) -> Bool {
        self.machine.lastProcessedStreamID.map { id > $0 } ?? false
    }

    // MARK: Connecting

    func connect() {
        let settings = self.pool.settings
        let tls = self.pool.tls
        let bound = NIOLoopBound(self, eventLoop: self.pool.eventLoop)
        let bootstrap = ClientBootstrap(group: self.pool.eventLoop)
            .connectTimeout(TimeAmount(settings.connectTimeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try settings.addTLSHandler(tls, to: sync)
                    let http2 = NIOHTTP2Handler(
                        mode: .client,
                        initialSettings: [
                            HTTP2Setting(parameter: .enablePush, value: 0),
                            HTTP2Setting(parameter: .initialWindowSize, value: settings.streamWindowBytes),
                            HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize),
                        ]
                    )
                    try sync.addHandler(http2)
                    try sync.addHandler(HTTP2FrameRouter(connection: bound, expectsALPN: tls != nil))
                }
            }
        settings.connect(bootstrap).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                self.channel = channel
                if self.machine.state == .closed { channel.close(promise: nil) }
            case .failure(let error):
                self.fail(UpstreamError(UpstreamError.Kind(connectError: error), "\(settings.endpoint): \(error)"))
            }
        }
    }

    /// The connection is up and NIOHTTP2 sent its preface: raise the connection window from its
    /// initial size to hold every stream's.
    func active(_ channel: any Channel) {
        self.channel = channel
        let raise = self.connectionWindow.size - Self.initialConnectionWindow
        if raise > 0 { self.write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: raise))) }
    }

    /// The server's SETTINGS arrived: the connection takes streams now.
    func receivedSettings(maxConcurrentStreams: Int?) {
        self.perform(self.machine.settingsReceived(maxConcurrentStreams: maxConcurrentStreams))
    }

    /// GOAWAY: finish what runs, take nothing new.
    func receivedGoAway(lastStreamID: Int, _ detail: String) {
        self.pool.logger.debug("upstream connection retiring", metadata: ["reason": "\(detail)"])
        self.perform(self.machine.goAwayReceived(lastStreamID: lastStreamID))
    }

    func receivedPong() {
        self.machine.pongReceived()
    }

    /// An error on the connection's pipeline. NIOHTTP2 reports a stream's own error here too,
    /// right before that stream closes with an error code: so the verdict waits for the end of
    /// the tick, and a stream's error leaves the connection and its other streams alone.
    func errorCaught(_ error: any Error) {
        if self.streamErrorThisTick || error is NIOHTTP2Errors.NoSuchStream {
            self.pool.logger.debug("upstream stream error; the connection carries on", metadata: ["error": "\(error)"])
            return
        }
        let scheduled = self.pendingError != nil
        self.pendingError = error
        guard !scheduled else { return }
        self.pool.eventLoop.assumeIsolated().execute {
            guard let error = self.pendingError else { return }
            self.pendingError = nil
            self.fail(UpstreamError(.reset, "\(error)"))
        }
    }

    /// Connecting or the connection failed.
    func fail(_ error: UpstreamError) {
        guard let wasConnecting = self.machine.closed() else { return }
        self.pingTimer?.cancel()
        self.channel?.close(promise: nil)
        // Its streams end with it; those the server said (GOAWAY) it never processed go back
        // to the pool once.
        let open = self.streams
        self.streams.removeAll()
        for (id, entry) in open.sorted(by: { $0.key < $1.key }) {
            _ = entry.stream.closed(reason: nil, refused: self.serverRefused(streamID: Int(id)))
        }
        if wasConnecting {
            self.pool.logger.warning("upstream connection failed", metadata: ["error": "\(error)"])
        } else {
            self.pool.logger.debug("upstream connection closed", metadata: ["reason": "\(error)", "streams": "\(self.activeStreams)"])
        }
        self.pool.connectionClosed(self, error: wasConnecting ? error : nil)
    }

    /// The channel closed.
    func closed() {
        self.fail(UpstreamError(.reset, "connection closed"))
    }

    func close() {
        self.fail(UpstreamError(.goingAway, "closed"))
    }

    private func perform(_ action: HTTP2ConnectionStateMachine.Action) {
        switch action {
        case .none:
            return
        case .offerRoom:
            self.pool.connectionHasRoom(self)
        case .startPingsAndOfferRoom:
            self.pool.logger.debug("upstream connection ready", metadata: ["max_streams": "\(self.machine.maxStreams)"])
            self.schedulePing()
            self.pool.connectionReady(self)
        case .close(let reason):
            self.pool.logger.debug("upstream connection closing", metadata: ["reason": "\(reason)"])
            self.close()
        case .sendPingAndReschedule:
            self.write(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 1), ack: false)))
            self.schedulePing()
        case .reschedulePing:
            self.schedulePing()
        }
    }

    // MARK: Streams

    func open(_ stream: HTTP2UpstreamStream) {
        guard self.channel != nil, !self.machine.isConnecting else {
            stream.failBeforeStart(UpstreamError(.connectFailed, "the connection is not ready"))
            return
        }
        let id = self.nextStreamID
        guard let (headers, body) = stream.started(on: self, as: id, endpoint: self.pool.settings.endpoint) else {
            stream.failBeforeStart(UpstreamError(.connectFailed, "no request to send"))
            return
        }
        self.nextStreamID = HTTP2StreamID(Int(id) + 2)
        self.machine.streamOpened()
        if Int(self.nextStreamID) > Self.lastClientStreamID { self.perform(self.machine.streamIDsExhausted()) }
        self.streams[id] = Entry(stream: stream, window: HTTP2InboundWindow(size: self.pool.settings.streamWindowBytes))
        // A stream NIOHTTP2 could not open (buffered past MAX_CONCURRENT_STREAMS when a GOAWAY
        // came, say) was never seen by the server.
        let promise = self.pool.eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenFailure { _ in self.ended(id, reason: nil, refused: true) }
        self.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers))), promise: promise)
        self.write(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body), endStream: true))))
    }

    /// Resets stream `id` (RST_STREAM(CANCEL)); it ends when NIOHTTP2 reports it closed.
    func reset(_ id: HTTP2StreamID) {
        guard self.streams[id] != nil else { return }
        self.write(HTTP2Frame(streamID: id, payload: .rstStream(.cancel)))
    }

    /// Stream `id` paused or resumed reading: its window is given back only while it reads.
    func setReading(_ reading: Bool, on id: HTTP2StreamID) {
        guard let increment = self.streams[id]?.window.setReading(reading) else { return }
        self.write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment)))
    }

    /// A frame for stream `id` (never the connection's own).
    func received(_ payload: HTTP2Frame.FramePayload, on id: HTTP2StreamID) {
        switch payload {
        case .headers(let headers):
            self.streams[id]?.stream.receivedHeaders(headers.headers, endStream: headers.endStream)
        case .data(let data):
            let length = data.data.readableBytes + (data.paddingBytes.map { $0 + 1 } ?? 0)
            if let increment = self.connectionWindow.received(length) {
                self.write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment)))
            }
            guard let stream = self.streams[id]?.stream else { return }
            if !data.endStream, let increment = self.streams[id]?.window.received(length) {
                self.write(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment)))
            }
            if case .byteBuffer(let buffer) = data.data {
                stream.receivedData(buffer, endStream: data.endStream)
            } else if data.endStream {
                stream.receivedData(ByteBuffer(), endStream: true)
            }
        default:
            break  // RST_STREAM arrives as the stream's close; the rest is NIOHTTP2's business
        }
    }

    /// NIOHTTP2 closed stream `id`, with the error code `reason` if it was reset.
    func streamClosed(_ id: HTTP2StreamID, reason: HTTP2ErrorCode?) {
        guard let stream = self.streams[id]?.stream else { return }
        if let reason, reason != .cancel, reason != .refusedStream {
            // A stream error: the error reported just before or after is this stream's.
            if let error = self.pendingError {
                self.pool.logger.debug("upstream stream error; the connection carries on", metadata: ["error": "\(error)"])
            }
            self.pendingError = nil
            if !self.streamErrorThisTick {
                self.streamErrorThisTick = true
                self.pool.eventLoop.assumeIsolated().execute { self.streamErrorThisTick = false }
            }
        }
        guard stream.mayRetry, reason != .refusedStream else {
            self.ended(id, reason: reason, refused: reason == .refusedStream)
            return
        }
        // Closed before any response: NIOHTTP2 closes the streams a GOAWAY refuses before it
        // passes the GOAWAY on, so look again once the connection has seen it.
        self.pool.eventLoop.assumeIsolated().execute {
            self.ended(id, reason: reason, refused: self.serverRefused(streamID: Int(id)))
        }
    }

    private func ended(_ id: HTTP2StreamID, reason: HTTP2ErrorCode?, refused: Bool) {
        guard let entry = self.streams.removeValue(forKey: id) else { return }
        let resetByUs = entry.stream.cancelledWhileServed
        let requeued = entry.stream.closed(reason: reason, refused: refused)
        self.perform(self.machine.streamEnded(resetByUs: resetByUs && !requeued, now: .now()))
    }

    // MARK: Writing

    /// Writes `frame`; everything written in one event-loop tick leaves in one flush.
    private func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>? = nil) {
        guard let channel = self.channel else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        channel.write(frame, promise: promise)
        guard !self.flushScheduled else { return }
        self.flushScheduled = true
        self.pool.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.channel?.flush()
        }
    }

    // MARK: Keep-alive

    private func schedulePing() {
        let interval = TimeAmount(self.pool.settings.pingInterval)
        self.pingTimer = self.pool.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            self.perform(self.machine.pingTimerFired())
        }
    }
}

/// The last handler of a connection's pipeline: hands its ``HTTP2UpstreamConnection`` the
/// connection's own frames (SETTINGS, GOAWAY, PING) and every stream's frames and closes.
final class HTTP2FrameRouter: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let connection: NIOLoopBound<HTTP2UpstreamConnection>
    /// Until the TLS handshake's event has been seen (then no more casts per event).
    private var expectsALPN: Bool

    init(connection: NIOLoopBound<HTTP2UpstreamConnection>, expectsALPN: Bool) {
        self.connection = connection
        self.expectsALPN = expectsALPN
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        guard frame.streamID == .rootStream else {
            self.connection.value.received(frame.payload, on: frame.streamID)
            return
        }
        switch frame.payload {
        case .settings(.settings(let settings)):
            let limit = settings.last { $0.parameter == .maxConcurrentStreams }?.value
            self.connection.value.receivedSettings(maxConcurrentStreams: limit)
        case .goAway(let lastStreamID, let errorCode, _):
            self.connection.value.receivedGoAway(lastStreamID: Int(lastStreamID), "GOAWAY \(errorCode) after stream \(lastStreamID)")
        case .ping(_, ack: true):
            self.connection.value.receivedPong()
        default:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent {
            self.connection.value.streamClosed(closed.streamID, reason: closed.reason)
            return
        }
        if self.expectsALPN, case .handshakeCompleted(let negotiated) = event as? TLSUserEvent {
            self.expectsALPN = false
            if negotiated != "h2" {
                self.connection.value.fail(
                    UpstreamError(.connectFailed, "the upstream did not negotiate HTTP/2 (ALPN: \(negotiated ?? "none")); use --upstream-http http1.1")
                )
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelActive(context: ChannelHandlerContext) {
        self.connection.value.active(context.channel)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.connection.value.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.connection.value.errorCaught(error)
    }
}
