import HandoffHTTP2
import Logging
import NIOCore
import NIOHPACK
import NIOPosix
import NIOSSL
import NIOTLS

/// One HTTP/2 connection of a ``HTTP2ConnectionPool``: performs what its
/// ``HTTP2ConnectionStateMachine`` decides, speaks HTTP/2 through its ``HTTP2ClientProtocol``,
/// and routes the events of its streams.
///
/// Streams are not channels: the protocol reports events with stream ids, and this class hands
/// each stream its own, writes its request, passes on its pauses (a paused stream's window is
/// not given back, so its server stops), and flushes once per event-loop tick however many
/// streams wrote. Loop-bound.
final class HTTP2UpstreamConnection {
    private unowned let pool: HTTP2ConnectionPool
    private var machine: HTTP2ConnectionStateMachine
    private var http2: HTTP2ClientProtocol
    private var channel: (any Channel)?
    private var pingTimer: Scheduled<Void>?
    /// Bounds the whole handshake (TCP, TLS, the server's SETTINGS) by the connect timeout.
    private var handshakeTimer: Scheduled<Void>?
    private var streams: [UInt32: HTTP2UpstreamStream] = [:]
    private var nextStreamID: UInt32 = 1
    private var flushScheduled = false

    init(pool: HTTP2ConnectionPool) {
        self.pool = pool
        self.machine = HTTP2ConnectionStateMachine(
            assumedStreams: HTTP2ConnectionPool.assumedStreamsPerConnection,
            resetBudget: pool.settings.resetBudget
        )
        let streamWindow = pool.settings.streamWindowBytes
        self.http2 = HTTP2ClientProtocol(
            streamWindowSize: streamWindow,
            // Room for every stream's window, so paused streams never starve the others.
            connectionWindowSize: streamWindow * 128,
            maxHeaderListSize: HPACKDecoder.defaultMaxHeaderListSize
        )
    }

    /// The highest stream id a client may open (2^31 − 1, odd).
    static let lastClientStreamID = UInt32(Int32.max)

    var isConnecting: Bool { self.machine.isConnecting }
    var canTakeStream: Bool { self.machine.canTakeStream }
    var activeStreams: Int { self.machine.activeStreams }
    /// Streams the server lets this connection run at once (assumed until its SETTINGS).
    var maxStreams: Int { self.machine.maxStreams }
    /// Streams it could take now.
    var room: Int { self.machine.room }

    /// Whether the server said (GOAWAY) it never processed stream `id`.
    func serverRefused(streamID id: UInt32) -> Bool {
        self.machine.lastProcessedStreamID.map { Int(id) > $0 } ?? false
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
                    try sync.addHandler(HTTP2ClientChannelHandler(connection: bound, expectsALPN: tls != nil))
                }
            }
        self.handshakeTimer = self.pool.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(settings.connectTimeout)) {
            guard self.machine.isConnecting else { return }
            self.fail(UpstreamError(.connectTimeout, "\(settings.endpoint): no HTTP/2 connection (TCP, TLS and SETTINGS) within \(settings.connectTimeout)"))
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

    /// The connection is up: the preface and our SETTINGS go out (TLS holds them until its
    /// handshake is done).
    func active(_ channel: any Channel) {
        self.channel = channel
        self.http2.start()
        self.flushSoon()
    }

    /// Bytes from the server: each event goes where it belongs.
    func received(_ bytes: ByteBuffer) {
        self.http2.receive(bytes)
        do {
            while self.machine.state != .closed, let event = try self.http2.nextEvent() {
                self.handle(event)
            }
        } catch {
            self.pool.logger.warning("upstream HTTP/2 protocol error", metadata: ["error": "\(error)"])
            self.fail(UpstreamError(.malformed, "HTTP/2 \(error)"))
            return
        }
        self.flushSoon()
    }

    private func handle(_ event: HTTP2ClientEvent) {
        switch event {
        case .data(let id, let buffer, let endStream):
            self.streams[id]?.receivedData(buffer, endStream: endStream)
        case .headers(let id, let headers, let endStream):
            self.streams[id]?.receivedHeaders(headers, endStream: endStream)
        case .streamClosed(let id, let reason):
            self.streamClosed(id, reason: reason)
        case .settings(let maxConcurrentStreams):
            self.perform(self.machine.settingsReceived(maxConcurrentStreams: maxConcurrentStreams))
        case .goAway(let lastStreamID, let code, let debug):
            self.pool.logger.debug("upstream connection retiring", metadata: ["reason": "GOAWAY \(code) after stream \(lastStreamID) \(debug)"])
            self.perform(self.machine.goAwayReceived(lastStreamID: Int(lastStreamID)))
        case .pong:
            self.machine.pongReceived()
        }
    }

    /// Connecting or the connection failed.
    func fail(_ error: UpstreamError) {
        guard let wasConnecting = self.machine.closed() else { return }
        self.pingTimer?.cancel()
        self.handshakeTimer?.cancel()
        if let channel = self.channel {
            // A GOAWAY the protocol wrote for a connection error goes out before the close.
            if self.http2.hasOutput { channel.writeAndFlush(self.http2.takeOutput(), promise: nil) }
            channel.close(promise: nil)
        }
        // Its streams end with it; those the server said (GOAWAY) it never processed go back
        // to the pool once.
        let open = self.streams
        self.streams.removeAll()
        for (id, stream) in open.sorted(by: { $0.key < $1.key }) {
            _ = stream.closed(reason: nil, refused: self.serverRefused(streamID: id))
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

    /// Closes the connection on our side (retired, or shutting down), telling the server first.
    func close() {
        if self.machine.state == .ready || self.machine.state == .retiring { self.http2.goAway(.noError, "closing") }
        self.fail(UpstreamError(.goingAway, "closed"))
    }

    private func perform(_ action: HTTP2ConnectionStateMachine.Action) {
        switch action {
        case .none:
            return
        case .offerRoom:
            self.pool.connectionHasRoom(self)
        case .startPingsAndOfferRoom:
            self.handshakeTimer?.cancel()
            self.handshakeTimer = nil
            self.pool.logger.debug("upstream connection ready", metadata: ["max_streams": "\(self.machine.maxStreams)"])
            self.schedulePing()
            self.pool.connectionReady(self)
        case .close(let reason):
            self.pool.logger.debug("upstream connection closing", metadata: ["reason": "\(reason)"])
            self.close()
        case .sendPingAndReschedule:
            self.http2.ping()
            self.flushSoon()
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
        guard let template = self.pool.headerTemplate else {
            stream.failBeforeStart(UpstreamError(.connectFailed, "the upstream's authority \(self.pool.settings.endpoint.authority) cannot be sent in HTTP/2"))
            return
        }
        guard let (headerBlock, body) = stream.started(on: self, as: id, template: template) else { return }
        self.nextStreamID = id + 2
        self.machine.streamOpened()
        self.streams[id] = stream
        self.http2.openStream(id, headerBlock: headerBlock, body: body)
        self.flushSoon()
        if self.nextStreamID > Self.lastClientStreamID { self.perform(self.machine.streamIDsExhausted()) }
    }

    /// Resets stream `id` (RST_STREAM with `code`, CANCEL unless the response was malformed);
    /// it is closed at once.
    func reset(_ id: UInt32, code: HTTP2ErrorCode = .cancel) {
        guard self.http2.resetStream(id, code: code) else { return }
        self.flushSoon()
        self.streamClosed(id, reason: code)
    }

    /// Stream `id` paused or resumed reading: its window is given back only while it reads.
    func setReading(_ reading: Bool, on id: UInt32) {
        self.http2.setReading(reading, on: id)
        self.flushSoon()
    }

    /// Stream `id` closed, with the error code `reason` if it was reset or refused (REFUSED_STREAM,
    /// or above a GOAWAY's last stream id: never processed, so it may go to another connection).
    private func streamClosed(_ id: UInt32, reason: HTTP2ErrorCode?) {
        guard let stream = self.streams.removeValue(forKey: id) else { return }
        let refused = reason == .refusedStream
        let resetByUs = stream.cancelledWhileServed
        let requeued = stream.closed(reason: reason, refused: refused)
        self.perform(self.machine.streamEnded(resetByUs: resetByUs && !requeued, now: .now()))
    }

    // MARK: Writing

    /// Everything written in one event-loop tick leaves in one write and flush. While the socket
    /// takes no more, the output waits in the protocol, which ends a connection whose server
    /// keeps asking for answers it does not read (``HTTP2ClientProtocol/maxQueuedAcknowledgements``).
    private func flushSoon() {
        guard !self.flushScheduled, self.http2.hasOutput else { return }
        self.flushScheduled = true
        self.pool.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            guard let channel = self.channel, channel.isWritable, self.http2.hasOutput, self.machine.state != .closed else { return }
            channel.writeAndFlush(self.http2.takeOutput(), promise: nil)
        }
    }

    /// The socket takes writes again: what waited goes out.
    func writable() {
        self.flushSoon()
    }

    // MARK: Keep-alive

    private func schedulePing() {
        let interval = TimeAmount(self.pool.settings.pingInterval)
        self.pingTimer = self.pool.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            self.perform(self.machine.pingTimerFired())
        }
    }
}

/// The last handler of a connection's pipeline: hands its ``HTTP2UpstreamConnection`` the bytes
/// the server sent, and checks that TLS negotiated `h2`.
final class HTTP2ClientChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let connection: NIOLoopBound<HTTP2UpstreamConnection>
    /// Until the TLS handshake's event has been seen (then no more casts per event).
    private var expectsALPN: Bool

    init(connection: NIOLoopBound<HTTP2UpstreamConnection>, expectsALPN: Bool) {
        self.connection = connection
        self.expectsALPN = expectsALPN
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.connection.value.received(self.unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
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

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.connection.value.writable() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.connection.value.fail(UpstreamError(.reset, "\(error)"))
    }
}
