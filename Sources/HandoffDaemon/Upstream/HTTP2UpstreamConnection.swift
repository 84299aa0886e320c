import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// One HTTP/2 connection of a ``HTTP2ConnectionPool``: performs what its
/// ``HTTP2ConnectionStateMachine`` decides. Loop-bound.
final class HTTP2UpstreamConnection {
    private unowned let pool: HTTP2ConnectionPool
    private var machine: HTTP2ConnectionStateMachine
    private var channel: (any Channel)?
    private var multiplexer: NIOHTTP2Handler.StreamMultiplexer?
    private var pingTimer: Scheduled<Void>?
    /// Set while a stream's own error is being handled: NIOHTTP2 resets that stream (which
    /// closes it with the error code), then hands the same error to the connection's pipeline,
    /// where it must not be taken for a connection error. Cleared at the end of the loop tick.
    private var streamFailedThisTick = false

    init(pool: HTTP2ConnectionPool) {
        self.pool = pool
        self.machine = HTTP2ConnectionStateMachine(
            assumedStreams: HTTP2ConnectionPool.assumedStreamsPerConnection,
            resetBudget: pool.settings.resetBudget
        )
    }

    var isConnecting: Bool { self.machine.isConnecting }
    var canTakeStream: Bool { self.machine.canTakeStream }
    var activeStreams: Int { self.machine.activeStreams }

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
                    var connection = NIOHTTP2Handler.ConnectionConfiguration()
                    connection.initialSettings = [
                        HTTP2Setting(parameter: .enablePush, value: 0),
                        HTTP2Setting(parameter: .initialWindowSize, value: settings.streamWindowBytes),
                        HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize),
                    ]
                    // Room for every stream's window, so paused streams never starve the others.
                    connection.targetWindowSize = min(Int(Int32.max), settings.streamWindowBytes * 128)
                    var stream = NIOHTTP2Handler.StreamConfiguration()
                    stream.targetWindowSize = settings.streamWindowBytes
                    let multiplexer = try sync.configureHTTP2Pipeline(
                        mode: .client,
                        connectionConfiguration: connection,
                        streamConfiguration: stream
                    ) { pushed in
                        pushed.close()
                    }
                    try sync.addHandler(HTTP2ConnectionWatcher(connection: bound, expectsALPN: tls != nil))
                    bound.value.multiplexer = multiplexer
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

    /// A stream was closed with an error code (a stream-level error): the error NIOHTTP2 hands
    /// the connection right after is that stream's.
    func streamFailed() {
        guard !self.streamFailedThisTick else { return }
        self.streamFailedThisTick = true
        self.pool.eventLoop.assumeIsolated().execute { self.streamFailedThisTick = false }
    }

    /// An error on the connection's pipeline: a stream's own error (that stream is reset and
    /// ended already) leaves the connection and its other streams alone.
    func errorCaught(_ error: any Error) {
        if self.streamFailedThisTick || error is NIOHTTP2Errors.NoSuchStream {
            self.pool.logger.debug("upstream stream error; the connection carries on", metadata: ["error": "\(error)"])
            return
        }
        self.fail(UpstreamError(.reset, "\(error)"))
    }

    /// Connecting or the connection failed.
    func fail(_ error: UpstreamError) {
        guard let wasConnecting = self.machine.closed() else { return }
        self.pingTimer?.cancel()
        self.channel?.close(promise: nil)
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
            self.pool.connectionHasRoom(self)
        case .close(let reason):
            self.pool.logger.debug("upstream connection closing", metadata: ["reason": "\(reason)"])
            self.close()
        case .sendPingAndReschedule:
            let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 1), ack: false))
            self.channel?.writeAndFlush(ping, promise: nil)
            self.schedulePing()
        case .reschedulePing:
            self.schedulePing()
        }
    }

    // MARK: Streams

    func open(_ stream: HTTP2UpstreamStream) {
        guard let multiplexer = self.multiplexer else {
            stream.failBeforeStart(UpstreamError(.connectFailed, "no multiplexer"))
            return
        }
        self.machine.streamOpened()
        stream.connection = self
        let bound = NIOLoopBound(stream, eventLoop: self.pool.eventLoop)
        multiplexer.createStreamChannel(promise: nil) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(bound.value)
            }
        }
    }

    /// A stream channel closed; `resetByUs` when we cancelled a stream the server was serving.
    func streamEnded(resetByUs: Bool) {
        self.perform(self.machine.streamEnded(resetByUs: resetByUs, now: .now()))
    }

    // MARK: Keep-alive

    private func schedulePing() {
        let interval = TimeAmount(self.pool.settings.pingInterval)
        self.pingTimer = self.pool.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            self.perform(self.machine.pingTimerFired())
        }
    }
}

/// Watches a connection's own frames and events for its ``HTTP2UpstreamConnection``.
final class HTTP2ConnectionWatcher: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let connection: NIOLoopBound<HTTP2UpstreamConnection>
    private let expectsALPN: Bool

    init(connection: NIOLoopBound<HTTP2UpstreamConnection>, expectsALPN: Bool) {
        self.connection = connection
        self.expectsALPN = expectsALPN
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
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
        if self.expectsALPN, case .handshakeCompleted(let negotiated) = event as? TLSUserEvent, negotiated != "h2" {
            self.connection.value.fail(
                UpstreamError(.connectFailed, "the upstream did not negotiate HTTP/2 (ALPN: \(negotiated ?? "none")); use --upstream-http http1.1")
            )
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.connection.value.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.connection.value.errorCaught(error)
    }
}
