import NIOCore

/// The `channel` backend: every message published to a Redis channel becomes an event for
/// the client (see ``ChannelEnvelope`` for the framing), with `: ping` keep-alives, until a
/// message closes the channel, the client leaves, or the stream reaches its maximum duration.
///
/// The `200` head goes out once the subscription is confirmed, so a client that has its head
/// receives everything published from then on. Pub/sub keeps nothing for later: a client
/// that cannot keep up (more than ``maxPendingBytes`` unsent) is ended with an error event
/// rather than buffered without bound.
final class ChannelSource: StreamSource, ChannelListener, TimerWheelTarget {
    private unowned let session: StreamSession
    private let loop: EventLoopState
    private let services: RedisServices
    private let channel: String
    private let timeouts: DaemonConfiguration.Timeouts
    private var listening = false
    private var responded = false
    private var finished = false
    private let startedAt = NIODeadline.now()
    private var lastClientWrite = NIODeadline.now()
    var wheelTimer = WheelTimer()

    /// Unsent bytes a client may have before it is ended as too slow.
    static let maxPendingBytes = 256 * 1024
    /// How long the subscription may take before the handoff is answered `503`.
    static let subscribeTimeout = TimeAmount.seconds(5)

    init(session: StreamSession, loop: EventLoopState, services: RedisServices, channel: String, timeouts: DaemonConfiguration.Timeouts) {
        self.session = session
        self.loop = loop
        self.services = services
        self.channel = channel
        self.timeouts = timeouts
    }

    func start() {
        if self.services.isInOutage, !self.services.subscriberIsConnected {
            self.finished = true
            let response = ErrorResponse(status: .serviceUnavailable, error: "redis_unavailable", message: "channels are unavailable now; retry shortly", retryAfter: .seconds(1))
            self.session.sourceFailed(response: response, message: response.message, reason: response.error, detail: nil, upstreamStatus: nil)
            return
        }
        self.listening = true
        self.services.metrics.channelClients.increment()
        self.services.listen(self.channel, self, loop: self.loop)
        self.armTimer()
    }

    func cancel() {
        guard !self.finished else { return }
        self.end()
    }

    func resume() {}

    // MARK: ChannelListener

    func channelSubscribed() {
        guard !self.finished, !self.responded else { return }
        self.responded = true
        self.lastClientWrite = .now()
        self.session.sourceResponded(flush: true)
        self.armTimer()
    }

    func channelMessage(_ message: ChannelMessage) {
        guard !self.finished, self.responded else { return }
        if self.session.pendingClientBytes > Self.maxPendingBytes {
            self.end()
            let response = ErrorResponse(status: .serviceUnavailable, error: "client_too_slow", message: "the client fell too far behind the channel")
            self.session.sourceFailed(response: response, message: response.message, reason: response.error, detail: nil, upstreamStatus: nil)
            return
        }
        if let bytes = message.eventBytes {
            self.lastClientWrite = message.receivedAt
            self.session.sourceProducedRaw(bytes, queued: message.envelope.close)
        }
        if message.envelope.close {
            self.end()
            self.session.sourceFinished()
        }
    }

    private func end() {
        self.finished = true
        self.wheelTimer.cancel(on: self.loop.wheel)
        if self.listening {
            self.listening = false
            self.services.unlisten(self.channel, self, loop: self.loop)
            self.services.metrics.channelClients.decrement()
        }
    }

    // MARK: Timer

    private func armTimer() {
        guard !self.finished else { return }
        let now = NIODeadline.now()
        var next = self.startedAt + TimeAmount(self.timeouts.maxStreamDuration)
        if !self.responded {
            next = min(next, self.startedAt + Self.subscribeTimeout)
        } else if self.timeouts.keepAliveInterval > .zero {
            next = min(next, self.lastClientWrite + TimeAmount(self.timeouts.keepAliveInterval))
        }
        self.wheelTimer.arm(self, on: self.loop.wheel, after: max(.milliseconds(1), next - now))
    }


    func timerFired(token: UInt32) {
        guard self.wheelTimer.fired(token), !self.finished else { return }
        let now = NIODeadline.now()
        if !self.responded {
            guard now < self.startedAt + Self.subscribeTimeout else {
                self.end()
                let response = ErrorResponse(status: .serviceUnavailable, error: "redis_unavailable", message: "the channel cannot be subscribed to now; retry shortly", retryAfter: .seconds(1))
                self.session.sourceFailed(response: response, message: response.message, reason: response.error, detail: nil, upstreamStatus: nil)
                return
            }
        } else if now >= self.startedAt + TimeAmount(self.timeouts.maxStreamDuration) {
            self.end()
            let message = "the stream reached its maximum duration"
            self.session.sourceFailed(response: ErrorResponse(status: .badGateway, error: "max_duration", message: message), message: message, reason: "max_duration", detail: nil, upstreamStatus: nil)
            return
        } else if self.timeouts.keepAliveInterval > .zero, now >= self.lastClientWrite + TimeAmount(self.timeouts.keepAliveInterval) {
            self.lastClientWrite = now
            self.session.sourceProducedKeepAlive()
        }
        self.armTimer()
    }
}
