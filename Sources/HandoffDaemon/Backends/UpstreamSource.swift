import HandoffSSE
import Logging
import NIOCore
import HandoffRequest

/// A stream fed by an upstream request: runs the request through a transport, parses the
/// event stream, lets the dialect interpret each event, and enforces the upstream timeouts.
/// Everything happens on the stream's event loop, with no task and no hop.
///
/// Before the upstream's head the client has seen nothing, so failures become real statuses
/// (`502`, `504`, `429`); after it they become an `event: error`.
final class UpstreamSource<Dialect: UpstreamDialect>: StreamSource, UpstreamResponseDelegate, TimerWheelTarget {
    private unowned let session: StreamSession
    private let loop: EventLoopState
    private let transport: any UpstreamTransport
    private var dialect: Dialect
    private var request: PreparedRequest?
    private let timeouts: DaemonConfiguration.Timeouts
    private var parser: SSEParser
    private var call: (any UpstreamCall)?
    var wheelTimer = WheelTimer()
    private var responded = false
    private var finished = false
    private var paused = false
    private let startedAt = NIODeadline.now()
    private var lastActivity = NIODeadline.now()
    private var lastClientWrite = NIODeadline.now()

    init(
        session: StreamSession,
        loop: EventLoopState,
        transport: any UpstreamTransport,
        dialect: Dialect,
        request: PreparedRequest,
        timeouts: DaemonConfiguration.Timeouts,
        maxEventBytes: Int
    ) {
        self.parser = SSEParser(maximumLineBytes: maxEventBytes, maximumEventBytes: maxEventBytes)
        self.session = session
        self.loop = loop
        self.transport = transport
        self.dialect = dialect
        self.request = request
        self.timeouts = timeouts
    }

    /// Access-log facts.
    var summary: StreamSummary { self.dialect.summary }

    // MARK: StreamSource

    func start() {
        guard let request = self.request else { return }
        self.request = nil
        self.armTimer()
        switch request {
        case .ready(let request):
            self.call = self.transport.start(request, on: self.loop.eventLoop, delegate: self)
        case .pending(let future):
            // Attachments are read on the thread pool; the request goes out once they are in.
            future.assumeIsolated().whenComplete { result in
                guard !self.finished else { return }
                switch result {
                case .success(let request):
                    self.call = self.transport.start(request, on: self.loop.eventLoop, delegate: self)
                case .failure(let error as HandoffRequestError):
                    self.failBeforeHead(ErrorResponse(status: .badRequest, error: error.reason.description, message: error.description), upstreamStatus: nil)
                case .failure(let error):
                    self.failBeforeHead(ErrorResponse(status: .internalServerError, error: "attachments", message: "the attachments could not be read"), upstreamStatus: nil, detail: "\(error)")
                }
            }
        }
    }

    func cancel() {
        self.finished = true
        self.wheelTimer.cancel(on: self.loop.wheel)
        let call = self.call
        self.call = nil
        call?.cancel()
    }

    func resume() {
        guard self.paused, !self.finished else { return }
        self.paused = false
        self.lastActivity = .now()
        self.call?.setReading(true)
    }

    // MARK: UpstreamResponseDelegate

    func upstreamResponded(status: Int, headers: [(String, String)]) {
        guard !self.finished else { return }
        self.lastActivity = .now()
        self.session.recordUpstreamResponse(status: status)
        switch status {
        case 200..<300:
            self.responded = true
            self.lastClientWrite = .now()
            self.session.sourceResponded(flush: true)
        case 429:
            let retryAfter = headers.first { $0.0.lowercased() == "retry-after" }.flatMap { RetryAfter.parse($0.1) }
            self.failBeforeHead(
                ErrorResponse(status: .tooManyRequests, error: "upstream_rate_limited", message: "the model provider is rate limiting; retry later", retryAfter: retryAfter ?? .seconds(1)),
                upstreamStatus: status
            )
        default:
            self.failBeforeHead(
                ErrorResponse(status: .badGateway, error: "upstream_status", message: "the model provider answered \(status)", upstreamStatus: status),
                upstreamStatus: status
            )
        }
    }

    func upstreamReceived(_ body: ByteBuffer) {
        guard !self.finished, self.responded else { return }
        self.lastActivity = .now()
        do {
            try body.withUnsafeReadableBytes { bytes in
                try self.parser.feed(bytes) { event in self.deliver(event) }
            }
        } catch {
            self.failMidStream(UpstreamError(.malformed, "\(error)"))
            return
        }
        // The events of one read leave in one write.
        if !self.finished { self.session.sourceSendQueued() }
        if !self.finished, !self.session.isWritable, !self.paused {
            self.paused = true
            self.call?.setReading(false)
        }
    }

    func upstreamFinished() {
        guard !self.finished else { return }
        self.call = nil
        if !self.responded {
            self.failBeforeHead(ErrorResponse(status: .badGateway, error: "upstream_failed", message: "the model provider closed without answering"), upstreamStatus: nil)
            return
        }
        _ = self.parser.finish()
        if self.dialect.canFinish {
            self.finished = true
            self.wheelTimer.cancel(on: self.loop.wheel)
            self.session.sourceFinished()
        } else {
            self.failMidStream(UpstreamError(.truncated, "the body ended before the stream's end marker"))
        }
    }

    func upstreamFailed(_ error: UpstreamError) {
        guard !self.finished else { return }
        self.call = nil
        if self.responded {
            self.failMidStream(error)
        } else {
            self.session.recordUpstreamResponse(status: nil)
            let timedOut = error.kind == .connectTimeout || error.kind == .firstByteTimeout
            self.failBeforeHead(
                ErrorResponse(
                    status: timedOut ? .gatewayTimeout : .badGateway,
                    error: error.kind.rawValue,
                    message: timedOut ? "the model provider did not answer in time" : "the model provider could not be reached"
                ),
                upstreamStatus: nil,
                detail: error.description
            )
        }
    }

    // MARK: Events

    private func deliver(_ event: SSEEvent) {
        guard !self.finished else { return }
        switch self.dialect.interpret(event) {
        case .nothing, .done:
            return
        case .content(let text):
            self.lastClientWrite = .now()
            self.session.sourceProducedContent(text, queued: true)
        case .passThrough(let event):
            self.lastClientWrite = .now()
            self.session.sourceProducedEvent(event, queued: true)
        case .failure(let error):
            self.failMidStream(error)
        }
    }

    private func failBeforeHead(_ response: ErrorResponse, upstreamStatus: Int?, detail: String? = nil) {
        self.cancel()
        self.session.sourceFailed(response: response, message: response.message, reason: response.error, detail: detail, upstreamStatus: upstreamStatus)
    }

    private func failMidStream(_ error: UpstreamError) {
        self.cancel()
        let message: String
        switch error.kind {
        case .idleTimeout: message = "the model provider went silent"
        case .maxDuration: message = "the stream reached its maximum duration"
        case .truncated: message = "the model provider's stream ended early"
        case .malformed: message = "the model provider sent an event that could not be read"
        case .upstreamReportedError: message = "the model provider reported an error"
        default: message = "the model provider's stream failed"
        }
        let response = ErrorResponse(status: .badGateway, error: error.kind.rawValue, message: message)
        self.session.sourceFailed(response: response, message: message, reason: error.kind.rawValue, detail: error.description, upstreamStatus: nil)
    }

    // MARK: Timer

    /// One timer covers every deadline; it is re-armed for the earliest one when it fires, so
    /// events never reschedule it.
    private func armTimer() {
        guard !self.finished else { return }
        let now = NIODeadline.now()
        var next = self.startedAt + TimeAmount(self.timeouts.maxStreamDuration)
        if self.responded {
            next = min(next, self.lastActivity + TimeAmount(self.timeouts.upstreamIdle))
            if self.timeouts.keepAliveInterval > .zero {
                next = min(next, self.lastClientWrite + TimeAmount(self.timeouts.keepAliveInterval))
            }
        } else {
            next = min(next, self.startedAt + TimeAmount(self.timeouts.upstreamFirstByte))
        }
        self.wheelTimer.arm(self, on: self.loop.wheel, after: max(.milliseconds(1), next - now))
    }


    func timerFired(token: UInt32) {
        guard self.wheelTimer.fired(token), !self.finished else { return }
        let now = NIODeadline.now()
        if now >= self.startedAt + TimeAmount(self.timeouts.maxStreamDuration) {
            if self.responded {
                self.failMidStream(UpstreamError(.maxDuration))
            } else {
                self.upstreamFailed(UpstreamError(.firstByteTimeout, "no response head"))
            }
            return
        }
        if !self.responded {
            if now >= self.startedAt + TimeAmount(self.timeouts.upstreamFirstByte) {
                self.upstreamFailed(UpstreamError(.firstByteTimeout, "no response head within \(self.timeouts.upstreamFirstByte)"))
                return
            }
        } else {
            if now >= self.lastActivity + TimeAmount(self.timeouts.upstreamIdle), !self.paused {
                self.failMidStream(UpstreamError(.idleTimeout, "no event within \(self.timeouts.upstreamIdle)"))
                return
            }
            if self.timeouts.keepAliveInterval > .zero, now >= self.lastClientWrite + TimeAmount(self.timeouts.keepAliveInterval) {
                self.lastClientWrite = now
                self.session.sourceProducedKeepAlive()
            }
        }
        self.armTimer()
    }
}

/// A source whose cancel reaches an upstream (counted as an upstream cancellation).
protocol UpstreamCancellable {}

extension UpstreamSource: UpstreamCancellable {}

/// An upstream request ready now, or once blocking preparation (reading attachments) is done.
enum PreparedRequest {
    case ready(UpstreamRequest)
    case pending(EventLoopFuture<UpstreamRequest>)
}
