import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// One HTTP/2 connection of a ``HTTP2ConnectionPool``. Loop-bound.
final class HTTP2UpstreamConnection {
    private enum State {
        case connecting
        case ready
        /// GOAWAY received or reset budget spent: existing streams finish, no new ones.
        case retiring
        case closed
    }

    private unowned let pool: HTTP2ConnectionPool
    private var state = State.connecting
    private var channel: (any Channel)?
    private var multiplexer: NIOHTTP2Handler.StreamMultiplexer?
    private var maxStreams = HTTP2ConnectionPool.assumedStreamsPerConnection
    private var resets = CircularBuffer<NIODeadline>()
    private var pingTimer: Scheduled<Void>?
    private var awaitingPong = false
    private(set) var activeStreams = 0

    init(pool: HTTP2ConnectionPool) {
        self.pool = pool
    }

    var isConnecting: Bool { self.state == .connecting }
    var canTakeStream: Bool { self.state == .ready && self.activeStreams < self.maxStreams }

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
                if self.state == .closed { channel.close(promise: nil) }
            case .failure(let error):
                self.fail(UpstreamError(UpstreamError.Kind(connectError: error), "\(settings.endpoint): \(error)"))
            }
        }
    }

    /// The server's SETTINGS arrived: the connection takes streams now.
    func receivedSettings(maxConcurrentStreams: Int?) {
        if let maxConcurrentStreams { self.maxStreams = max(0, maxConcurrentStreams) }
        if self.state == .connecting {
            self.pool.logger.debug("upstream connection ready", metadata: ["max_streams": "\(self.maxStreams)"])
            self.state = .ready
            self.schedulePing()
        }
        self.pool.connectionHasRoom(self)
    }

    /// GOAWAY: finish what runs, take nothing new.
    func receivedGoAway(_ detail: String) {
        guard self.state == .ready || self.state == .connecting else { return }
        self.pool.logger.debug("upstream connection retiring", metadata: ["reason": "\(detail)"])
        self.state = .retiring
        if self.activeStreams == 0 { self.close() }
    }

    func receivedPong() {
        self.awaitingPong = false
    }

    /// Connecting or the connection failed.
    func fail(_ error: UpstreamError) {
        guard self.state != .closed else { return }
        let wasConnecting = self.state == .connecting
        self.state = .closed
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

    // MARK: Streams

    func open(_ stream: HTTP2UpstreamStream) {
        guard let multiplexer = self.multiplexer else {
            stream.failBeforeStart(UpstreamError(.connectFailed, "no multiplexer"))
            return
        }
        self.activeStreams += 1
        stream.connection = self
        let bound = NIOLoopBound(stream, eventLoop: self.pool.eventLoop)
        multiplexer.createStreamChannel(promise: nil) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(bound.value)
            }
        }
    }

    /// A stream channel closed; `reset` when we cancelled it (RST_STREAM).
    func streamEnded(reset: Bool) {
        self.activeStreams -= 1
        if reset { self.recordReset() }
        switch self.state {
        case .retiring where self.activeStreams == 0:
            self.close()
        case .ready:
            self.pool.connectionHasRoom(self)
        default:
            break
        }
    }

    private func recordReset() {
        let now = NIODeadline.now()
        self.resets.append(now)
        while let first = self.resets.first, now - first > .seconds(30) { self.resets.removeFirst() }
        if self.resets.count >= self.pool.settings.resetBudget, self.state == .ready {
            self.pool.logger.debug("upstream connection spent its reset budget; retiring it")
            self.state = .retiring
            self.pool.connectionHasRoom(self)
        }
    }

    // MARK: Keep-alive

    private func schedulePing() {
        let interval = TimeAmount(self.pool.settings.pingInterval)
        self.pingTimer = self.pool.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            guard self.state == .ready || self.state == .retiring, let channel = self.channel else { return }
            if self.awaitingPong {
                self.pool.logger.warning("upstream connection did not answer a PING; closing it")
                self.close()
                return
            }
            if self.activeStreams > 0 {
                self.awaitingPong = true
                let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 1), ack: false))
                channel.writeAndFlush(ping, promise: nil)
            }
            self.schedulePing()
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
            self.connection.value.receivedGoAway("GOAWAY \(errorCode) after stream \(lastStreamID)")
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
        self.connection.value.fail(UpstreamError(.reset, "\(error)"))
    }
}
