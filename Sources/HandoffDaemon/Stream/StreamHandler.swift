import HandoffSSE
import Logging
import NIOCore

/// The one handler of a client connection's channel: it writes the whole HTTP response.
///
/// Reading is used only to notice the client leaving (EOF or reset); anything the client sends
/// is discarded. Decisions come from ``StreamStateMachine``; this class performs them.
final class StreamHandler: ChannelInboundHandler, LoopTimerTarget {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What the acceptor decided before the connection reached us.
    enum Admission: Sendable {
        /// A well-formed handoff with this payload.
        case handoff(payload: [UInt8])
        /// A malformed handoff; answer with this error.
        case refused(ErrorResponse, reason: String)
    }

    private enum TimerPurpose {
        case none
        case writeProgress
        case linger
    }

    private let environment: StreamEnvironment
    private var admission: Admission?
    private var machine = StreamStateMachine()
    private var context: ChannelHandlerContext?
    private var source: (any StreamSource)?
    private var timer: NIOScheduledCallback?
    private var timerPurpose = TimerPurpose.none
    private var admittedAsStream = false
    private var finalized = false
    private var startedAt = NIODeadline.now()
    private var firstByteRecorded = false
    private var extraHeaders: [HandoffRequest.ResponseHeader] = []
    /// Access-log fields, kept only while a stream runs.
    private var log: AccessLogFields?

    /// Links of ``StreamRegistry``'s intrusive list.
    var registryPrevious: StreamHandler?
    var registryNext: StreamHandler?

    init(environment: StreamEnvironment, admission: Admission) {
        self.environment = environment
        self.admission = admission
    }

    /// Whether the client can take more bytes now.
    var isWritable: Bool { self.context?.channel.isWritable ?? false }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        self.startedAt = .now()
        guard let admission = self.admission else { return }
        self.admission = nil
        switch admission {
        case .refused(let response, let reason):
            self.environment.metrics.handoffError(reason)
            self.perform(self.machine.rejected(response))
        case .handoff(let payload):
            self.environment.metrics.handoffs.increment()
            self.begin(payload: payload, context: context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The request was Apache's; whatever else the client sends is not ours to read.
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if self.timerPurpose == .writeProgress { self.cancelTimer() }
            self.source?.resume()
        } else if self.timerPurpose == .none {
            self.armTimer(.writeProgress, after: self.environment.configuration.timeouts.write)
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.perform(self.machine.connectionClosed())
        self.finalize()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.environment.logger.debug("client connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.finalize()
        self.context = nil
    }

    // MARK: Start

    private func begin(payload: [UInt8], context: ChannelHandlerContext) {
        let request: HandoffRequest
        do {
            request = try HandoffRequest.decode(payload, limits: self.environment.requestLimits)
        } catch {
            self.environment.logger.debug("invalid handoff data", metadata: ["error": "\(error)"])
            self.environment.metrics.handoffError(error.reason.description)
            let response = ErrorResponse(status: .badRequest, error: error.reason.description, message: error.description)
            self.perform(self.machine.rejected(response))
            return
        }
        let backendName = request.backend ?? self.environment.configuration.defaultBackend.rawValue
        guard let backend = BackendKind(rawValue: backendName) else {
            self.environment.metrics.handoffError("unknown_backend")
            let message = "unknown backend '\(backendName)'; this daemon serves: \(BackendKind.allCases.map(\.rawValue).joined(separator: ", "))"
            self.perform(self.machine.rejected(ErrorResponse(status: .badRequest, error: "unknown_backend", message: message)))
            return
        }
        guard self.environment.capacity.admitStream() else {
            self.environment.metrics.handoffError("over_capacity")
            let response = ErrorResponse(
                status: .serviceUnavailable,
                error: "over_capacity",
                message: "the server is at its stream limit; retry shortly",
                retryAfterSeconds: self.environment.configuration.limits.retryAfterSeconds
            )
            self.perform(self.machine.rejected(response))
            return
        }
        let source: any StreamSource
        do {
            source = try self.makeSource(backend, request: request, eventLoop: context.eventLoop, allocator: context.channel.allocator)
        } catch let refusal as Refusal {
            self.environment.capacity.releaseStream()
            self.environment.metrics.handoffError(refusal.response.error)
            self.perform(self.machine.rejected(refusal.response))
            return
        } catch {
            self.environment.capacity.releaseStream()
            self.perform(self.machine.rejected(ErrorResponse(status: .internalServerError, error: "internal", message: "the stream could not start")))
            return
        }
        self.admittedAsStream = true
        self.extraHeaders = request.responseHeaders
        self.log = AccessLogFields(request: request, backend: backend)
        self.environment.metrics.activeStreams.increment()
        self.environment.registry(for: context.eventLoop).insert(self)
        self.source = source
        source.start()
    }

    /// A handoff refused while choosing its source.
    private struct Refusal: Error {
        var response: ErrorResponse
    }

    private func makeSource(_ backend: BackendKind, request: HandoffRequest, eventLoop: any EventLoop, allocator: ByteBufferAllocator) throws -> any StreamSource {
        let backends = self.environment.backends
        let timeouts = self.environment.configuration.timeouts
        func refused(_ status: HTTPStatus, _ error: String, _ message: String) -> Refusal {
            Refusal(response: ErrorResponse(status: status, error: error, message: message))
        }
        do {
            switch backend {
            case .mock:
                let script = MockScript(request: request, configuration: self.environment.configuration.mock)
                return MockSource(handler: self, eventLoop: eventLoop, script: script)
            case .openai:
                guard let (settings, transport) = backends.openAI else {
                    throw refused(.notImplemented, "backend_not_configured", "the openai backend is not configured on this server")
                }
                let dialect = OpenAIDialect(pathPrefix: settings.upstream.endpoint.pathPrefix, apiKey: settings.apiKey, defaultModel: settings.defaultModel)
                let upstreamRequest = try dialect.makeRequest(for: request, allocator: allocator)
                return UpstreamSource(handler: self, eventLoop: eventLoop, transport: transport, dialect: dialect, request: upstreamRequest, timeouts: timeouts)
            case .langgraph:
                guard let name = request.profile ?? backends.defaultLangGraphProfile else {
                    throw refused(.badRequest, "profile_required", "name a langgraph profile; this server has: \(backends.langGraph.keys.sorted().joined(separator: ", "))")
                }
                guard let (profile, transport) = backends.langGraph[name] else {
                    throw refused(.badRequest, "unknown_profile", "no langgraph profile named '\(name)'")
                }
                let dialect = LangGraphDialect(profile: profile)
                let upstreamRequest = try dialect.makeRequest(for: request, allocator: allocator)
                return UpstreamSource(handler: self, eventLoop: eventLoop, transport: transport, dialect: dialect, request: upstreamRequest, timeouts: timeouts)
            }
        } catch let error as HandoffRequestError {
            throw Refusal(response: ErrorResponse(status: .badRequest, error: error.reason.description, message: error.description))
        }
    }

    // MARK: Source reports

    /// The source's upstream answered `2xx`. `flush`: send the head now rather than with the
    /// first event (an upstream may take a while to its first token).
    func sourceResponded(flush: Bool = false) {
        self.perform(self.machine.sourceResponded())
        if flush { self.context?.flush() }
    }

    /// A native event to pass through unchanged (LangGraph).
    func sourceProducedEvent(_ event: SSEEvent) {
        guard self.machine.sourceProducedEvent() == .writeEvent, let context = self.context else { return }
        var buffer = context.channel.allocator.buffer(capacity: event.data.utf8.count + 32)
        SSEEncoder.writeEvent(event.data, event: event.event, id: event.id, into: &buffer)
        self.environment.metrics.eventsSent.increment()
        self.log?.events += 1
        self.write(buffer, context: context)
    }

    /// The upstream answered with `status`, or failed before answering (`nil`).
    func recordUpstreamResponse(status: Int?) {
        self.environment.metrics.upstreamResponse(status: status)
        self.log?.upstreamStatus = status
    }

    /// A `: ping` comment during upstream silence.
    func sourceProducedKeepAlive() {
        guard self.machine.sourceProducedEvent() == .writeEvent, let context = self.context else { return }
        self.write(HTTPResponse.pingComment, context: context)
    }

    /// The source failed: before the head the client gets `response`, after it an error event.
    func sourceFailed(response: ErrorResponse, message: String, reason: String, detail: String?, upstreamStatus: Int?) {
        self.environment.logger.debug(
            "stream failed",
            metadata: ["reason": "\(reason)", "detail": "\(detail ?? "")", "upstream_status": "\(upstreamStatus.map(String.init) ?? "")"]
        )
        self.log?.failure = reason
        self.perform(self.machine.sourceFailed(response: response, message: message, reason: reason))
    }

    func sourceProducedContent(_ content: String) {
        guard self.machine.sourceProducedEvent() == .writeEvent, let context = self.context else { return }
        var buffer = context.channel.allocator.buffer(capacity: content.utf8.count + 24)
        HandoffEvents.writeContent(content, into: &buffer)
        self.environment.metrics.eventsSent.increment()
        self.log?.events += 1
        self.write(buffer, context: context)
    }

    func sourceFinished() {
        self.perform(self.machine.sourceFinished())
    }

    /// Called on the loop by the drain logic.
    func shutdownDeadlinePassed() {
        let response = ErrorResponse(
            status: .serviceUnavailable,
            error: "shutting_down",
            message: "the server is shutting down; retry shortly",
            retryAfterSeconds: self.environment.configuration.limits.retryAfterSeconds
        )
        self.perform(self.machine.shutdownDeadlinePassed(response: response))
    }

    // MARK: Actions

    private func perform(_ action: StreamStateMachine.Action) {
        switch action {
        case .none, .writeEvent:
            return
        case .writeHead:
            guard let context = self.context else { return }
            // The head is not sent before the first event; both leave in one flush.
            let head = HTTPResponse.streamHead(extraHeaders: self.extraHeaders, allocator: context.channel.allocator)
            self.extraHeaders = []
            self.environment.metrics.bytesSent.increment(by: head.readableBytes)
            self.log?.bytes += head.readableBytes
            self.log?.status = 200
            context.write(self.wrapOutboundOut(head), promise: nil)
        case .writeFinal(let bytes, let cancelSource):
            if cancelSource {
                self.cancelSource()
            } else if let source = self.source {
                self.summary = source.summary
            }
            self.source = nil
            self.writeFinal(bytes)
        case .shutdownOutput:
            guard let context = self.context else { return }
            self.cancelTimer()
            context.close(mode: .output, promise: nil)
            self.armTimer(.linger, after: self.environment.configuration.timeouts.linger)
        case .close(let cancelSource):
            if cancelSource {
                self.cancelSource()
            } else if let source = self.source {
                self.summary = source.summary
            }
            self.source = nil
            self.cancelTimer()
            self.context?.close(promise: nil)
        }
    }

    private func write(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        if !self.firstByteRecorded {
            self.firstByteRecorded = true
            let elapsed = (NIODeadline.now() - self.startedAt).nanoseconds
            self.environment.metrics.timeToFirstByte.recordNanoseconds(elapsed)
            self.log?.timeToFirstByteNanoseconds = elapsed
        }
        self.environment.metrics.bytesSent.increment(by: buffer.readableBytes)
        self.log?.bytes += buffer.readableBytes
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
        if !context.channel.isWritable, self.timerPurpose == .none {
            self.armTimer(.writeProgress, after: self.environment.configuration.timeouts.write)
        }
    }

    private func writeFinal(_ bytes: StreamStateMachine.FinalBytes) {
        guard let context = self.context else { return }
        var buffer: ByteBuffer
        var timeout = self.environment.configuration.timeouts.write
        switch bytes {
        case .done:
            buffer = context.channel.allocator.buffer(capacity: 16)
            HandoffEvents.writeDone(into: &buffer)
        case .errorEvent(let message, let reason):
            buffer = context.channel.allocator.buffer(capacity: 64 + message.utf8.count)
            HandoffEvents.writeError(message, reason: reason, into: &buffer)
        case .errorResponse(let response):
            self.log?.status = response.status.code
            timeout = min(timeout, self.environment.configuration.timeouts.rejectionWrite)
            self.environment.metrics.rejection(status: response.status.code)
            buffer = HTTPResponse.error(
                response.status,
                error: response.error,
                message: response.message,
                retryAfterSeconds: response.retryAfterSeconds,
                upstreamStatus: response.upstreamStatus,
                allocator: context.channel.allocator
            )
        }
        self.cancelTimer()
        self.armTimer(.writeProgress, after: timeout)
        self.environment.metrics.bytesSent.increment(by: buffer.readableBytes)
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success: self.perform(self.machine.finalWriteCompleted())
            case .failure: self.perform(self.machine.connectionClosed())
            }
        }
    }

    private func cancelSource() {
        guard let source = self.source else { return }
        self.summary = source.summary
        self.source = nil
        source.cancel()
        if source is any UpstreamCancellable { self.environment.metrics.upstreamCancellations.increment() }
    }

    private var summary = StreamSummary()

    // MARK: Timer

    private func armTimer(_ purpose: TimerPurpose, after duration: Duration) {
        guard let context = self.context else { return }
        self.timer?.cancel()
        self.timerPurpose = purpose
        self.timer = LoopTimer.schedule(self, on: context.eventLoop, in: TimeAmount(duration))
    }

    private func cancelTimer() {
        self.timer?.cancel()
        self.timer = nil
        self.timerPurpose = .none
    }

    func loopTimerFired() {
        let purpose = self.timerPurpose
        self.timer = nil
        self.timerPurpose = .none
        switch purpose {
        case .none: return
        case .writeProgress: self.perform(self.machine.writeTimedOut())
        case .linger: self.perform(self.machine.lingerTimedOut())
        }
    }

    // MARK: End

    private func finalize() {
        guard !self.finalized else { return }
        self.finalized = true
        self.cancelSource()
        self.cancelTimer()
        self.environment.capacity.clientDescriptorClosed()
        if self.admittedAsStream, let context = self.context {
            self.environment.registry(for: context.eventLoop).remove(self)
            self.environment.capacity.releaseStream()
            self.environment.metrics.activeStreams.decrement()
            self.environment.metrics.streamDuration.recordNanoseconds((NIODeadline.now() - self.startedAt).nanoseconds)
        }
        let outcome = self.machine.outcome ?? .clientDisconnected
        if outcome == .clientDisconnected { self.environment.metrics.clientDisconnects.increment() }
        self.environment.metrics.stream(outcome: outcome)
        if let accessLogger = self.environment.accessLogger, var log = self.log {
            log.summary = self.summary
            log.outcome = outcome
            log.durationNanoseconds = (NIODeadline.now() - self.startedAt).nanoseconds
            log.emit(to: accessLogger)
        }
        self.log = nil
    }
}
