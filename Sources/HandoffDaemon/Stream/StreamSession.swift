import HandoffSSE
import HandoffWire
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
import HandoffRequest
#endif

/// One client connection from adoption to close: it writes the whole HTTP response.
///
/// Decisions come from ``StreamStateMachine``; this class performs them on its event loop,
/// writing through a lean ``ClientConnection`` and running its ``StreamSource``.
final class StreamSession: ClientConnectionDelegate, TimerWheelTarget {
    /// What the acceptor decided before the connection reached a loop.
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
    /// The loop this stream lives on, with its timer wheel.
    let loop: EventLoopState
    var eventLoop: any EventLoop { self.loop.eventLoop }
    private var connection: ClientConnection?
    private var machine = StreamStateMachine()
    private var source: (any StreamSource)?
    var wheelTimer = WheelTimer()
    private var timerPurpose = TimerPurpose.none
    /// When the client is cut if it takes nothing more; every step forward moves it, and the
    /// timer (armed once) checks it when due rather than being re-armed per step.
    private var writeDeadline = NIODeadline.uptimeNanoseconds(0)
    private var writeProgress = WriteProgress()
    private var admittedAsStream = false
    private var finalized = false
    private let startedAt = NIODeadline.now()
    private var firstByteRecorded = false
    private var firstByteNanoseconds: Int64?
    private var extraHeaders: [HandoffRequest.ResponseHeader] = []
    private var summary = StreamSummary()
    /// Access-log fields, kept only while a stream runs.
    private var log: AccessLogFields?
    /// A resumable stream's event numbering and recording.
    private var recording: Recording?
    /// The client descriptor was already given back (a detached stream).
    private var descriptorReleased = false
    /// The finished-answer document for the application, when callbacks are on.
    private var completion: CompletionRecord?

    /// A resumable stream: events are numbered (`id: N`) and recorded while Redis allows.
    private struct Recording {
        enum State {
            /// The stream id's claim has not been answered yet.
            case claiming
            case recording(StreamRecorder)
            /// Redis was unavailable: the stream runs live only.
            case off
        }

        var nextID: Int64 = 1
        var state = State.claiming

        var recorder: StreamRecorder? {
            if case .recording(let recorder) = self.state { return recorder }
            return nil
        }

        /// Whether a client-less stream still has a reason to run.
        var isWorthRunningDetached: Bool {
            switch self.state {
            case .claiming: true
            case .recording(let recorder): recorder.isRecording
            case .off: false
            }
        }
    }

    /// Links of ``StreamRegistry``'s intrusive list.
    var registryPrevious: StreamSession?
    var registryNext: StreamSession?

    /// Allocator for event buffers (NIO's default allocator is a thin wrapper over malloc).
    static let allocator = ByteBufferAllocator()

    private init(environment: StreamEnvironment, loop: EventLoopState) {
        self.environment = environment
        self.loop = loop
    }

    /// Adopts client descriptor `fd` on `loop` (where this must run) and starts.
    static func start(fd: CInt, admission: Admission, environment: StreamEnvironment, loop: EventLoopState) {
        let session = StreamSession(environment: environment, loop: loop)
        do {
            let connection = try ClientConnection(fd: fd, table: loop.clients, watcher: environment.watcher)
            connection.setDelegate(session)
            session.connection = connection
        } catch {
            environment.logger.error("adopting a client connection failed", metadata: ["error": "\(error)", "fd": "\(fd)"])
            environment.metrics.handoffError("launch_failed")
            try? Syscall.close(fd)
            environment.capacity.clientDescriptorClosed()
            return
        }
        switch admission {
        case .refused(let response, let reason):
            environment.metrics.handoffError(reason)
            session.perform(session.machine.rejected(response))
        case .handoff(let payload):
            environment.metrics.handoffs.increment()
            session.begin(payload: payload)
        }
    }

    /// Whether the client can take more bytes now (always, once a resumable stream detached:
    /// its events only go to the recording).
    var isWritable: Bool { self.connection?.isWritable ?? (self.machine.state == .detached) }

    /// Bytes written but not yet taken by the client.
    var pendingClientBytes: Int { self.connection?.pendingBytes ?? 0 }

    // MARK: Start

    private func begin(payload: [UInt8]) {
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
        let capacity = self.environment.capacity
        let upstreamDescriptors = self.environment.backends.descriptorsPerStream(backend, profile: request.profile)
        guard capacity.admitStream() else {
            self.refuseOverCapacity(reason: "over_capacity", limit: "stream limit")
            return
        }
        // An upstream connection of its own needs a descriptor too: without room for it the
        // stream could only fail later (EMFILE at connect), so it is refused now, retryably.
        guard upstreamDescriptors == 0 || capacity.hasRoomForDescriptors(upstreamDescriptors) else {
            capacity.releaseStream()
            self.refuseOverCapacity(reason: "out_of_descriptors", limit: "connection limit")
            return
        }
        let source: any StreamSource
        do {
            source = try self.makeSource(backend, request: request)
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
        if self.environment.accessLog != nil { self.log = AccessLogFields(request: request, backend: backend) }
        self.environment.metrics.activeStreams.increment()
        self.loop.registry.insert(self)
        self.source = source
        if self.environment.completions != nil, request.completion, !request.resume, backend != .channel {
            self.completion = CompletionRecord(
                request: request,
                backend: backend.rawValue,
                model: request.model ?? (backend == .openai ? self.environment.backends.openAI?.backend.defaultModel : nil),
                startedAtMilliseconds: CompletionOutbox.epochMilliseconds()
            )
        }
        if request.resumable, let redis = self.environment.redis, let streamID = request.streamID {
            self.startRecorded(source, keys: redis.keys(for: streamID), redis: redis, request: request)
        } else {
            source.start()
        }
    }

    /// Claims the stream id, then starts `source` recorded; without Redis it runs live only,
    /// and a taken id is refused with `409`.
    private func startRecorded(_ source: any StreamSource, keys: StreamKeys, redis: RedisServices, request: HandoffRequest) {
        self.machine.keepsSourceWithoutClient = true
        self.recording = Recording()
        let liveTTL = self.environment.configuration.timeouts.maxStreamDuration + redis.settings.resumeTTL
        let owner = StreamRecorder.ownerToken(requestID: request.requestID)
        StreamRecorder.claim(services: redis, loop: self.loop, keys: keys, owner: owner, liveTTL: liveTTL).assumeIsolated().whenComplete { result in
            guard let current = self.source, current === source else {
                // The session ended while claiming (shutdown): the id must not stay taken.
                if case .success(true) = result { StreamRecorder.release(keys, owner: owner, services: redis, loop: self.loop) }
                return
            }
            switch result {
            case .success(true):
                redis.metrics.recordedStreams.increment()
                self.recording?.state = .recording(StreamRecorder(services: redis, loop: self.loop, keys: keys, liveTTL: liveTTL))
                source.start()
            case .success(false):
                self.recording = nil
                self.completion = nil
                self.environment.metrics.handoffError("stream_id_taken")
                self.source = nil
                let response = ErrorResponse(status: .conflict, error: "stream_id_taken", message: "a stream with this stream_id was already started; resume it or choose another id")
                if self.machine.state == .detached {
                    self.finalize()
                } else {
                    self.perform(self.machine.rejected(response))
                }
            case .failure:
                // Redis may have run the SET and lost only the reply: release what may be ours.
                StreamRecorder.release(keys, owner: owner, services: redis, loop: self.loop)
                redis.metrics.recordingFailures.increment()
                self.recording?.state = .off
                if self.machine.state == .detached {
                    self.source = nil
                    self.finalize()
                } else {
                    source.start()
                }
            }
        }
    }

    /// A handoff refused while choosing its source.
    private struct Refusal: Error {
        var response: ErrorResponse
    }

    private func makeSource(_ backend: BackendKind, request: HandoffRequest) throws -> any StreamSource {
        let backends = self.environment.backends
        let timeouts = self.environment.configuration.timeouts
        func refused(_ status: HTTPStatus, _ error: String, _ message: String) -> Refusal {
            Refusal(response: ErrorResponse(status: status, error: error, message: message))
        }
        if request.resumable || request.resume || backend == .channel {
            guard self.environment.redis != nil else {
                throw refused(.notImplemented, "redis_not_configured", "resumable streams and channels need Redis: start handoffd with --redis-url")
            }
        }
        if request.resume, let redis = self.environment.redis, let streamID = request.streamID {
            return FollowSource(session: self, loop: self.loop, services: redis, keys: redis.keys(for: streamID), after: request.lastEventID, timeouts: timeouts)
        }
        do {
            switch backend {
            case .channel:
                guard let redis = self.environment.redis else { throw refused(.notImplemented, "redis_not_configured", "the channel backend needs Redis") }
                guard let channel = request.channel else {
                    throw refused(.badRequest, "channel_required", "the channel backend needs a channel name (\"channel\")")
                }
                guard !request.resumable else {
                    throw refused(.badRequest, "invalid_value", "resumable: a channel is live only; record what must not be lost in a resumable stream")
                }
                // The daemon's own names (a stream's wake-ups) are not the application's channels.
                guard !channel.hasPrefix(redis.settings.keyPrefix) else {
                    throw refused(.badRequest, "invalid_value", "channel: names starting with '\(redis.settings.keyPrefix)' are the daemon's own")
                }
                return ChannelSource(session: self, loop: self.loop, services: redis, channel: channel, timeouts: timeouts)
            case .mock:
                let script = MockScript(request: request, configuration: self.environment.configuration.mock)
                return MockSource(session: self, wheel: self.loop.wheel, script: script)
            case .openai:
                guard let (settings, transport) = backends.openAI else {
                    throw refused(.notImplemented, "backend_not_configured", "the openai backend is not configured on this server")
                }
                let dialect = OpenAIDialect(pathPrefix: settings.upstream.endpoint.pathPrefix, apiKey: settings.apiKey, defaultModel: settings.defaultModel)
                let prepared: PreparedRequest
                if request.attachments.isEmpty {
                    prepared = .ready(try dialect.makeRequest(for: request, allocator: Self.allocator))
                } else {
                    prepared = .pending(self.loadingAttachments(of: request, dialect: dialect))
                }
                return UpstreamSource(session: self, loop: self.loop, transport: transport, dialect: dialect, request: prepared, timeouts: timeouts, maxEventBytes: self.environment.configuration.limits.maxUpstreamEventBytes)
            case .langgraph:
                guard let name = request.profile ?? backends.defaultLangGraphProfile else {
                    throw refused(.badRequest, "profile_required", "name a langgraph profile; this server has: \(backends.langGraph.keys.sorted().joined(separator: ", "))")
                }
                guard let (profile, transport) = backends.langGraph[name] else {
                    throw refused(.badRequest, "unknown_profile", "no langgraph profile named '\(name)'")
                }
                let dialect = LangGraphDialect(profile: profile)
                let upstreamRequest = try dialect.makeRequest(for: request, allocator: Self.allocator)
                return UpstreamSource(session: self, loop: self.loop, transport: transport, dialect: dialect, request: .ready(upstreamRequest), timeouts: timeouts, maxEventBytes: self.environment.configuration.limits.maxUpstreamEventBytes)
            }
        } catch let error as HandoffRequestError {
            throw Refusal(response: ErrorResponse(status: .badRequest, error: error.reason.description, message: error.description))
        }
    }

    /// Reads the request's attachments on the thread pool (never on the loop), then builds the
    /// upstream request on the loop.
    private func loadingAttachments(of request: HandoffRequest, dialect: OpenAIDialect) -> EventLoopFuture<UpstreamRequest> {
        let references = request.attachments
        let limits = self.environment.requestLimits.attachments
        return self.environment.threadPool.runIfActive(eventLoop: self.eventLoop) {
            try references.enumerated().map { index, reference in
                try Attachments.load(reference, limits: limits, field: "attachments[\(index)]")
            }
        }.assumeIsolated().flatMapThrowing { parts in
            var loaded = request
            loaded.attachmentParts = parts
            return try dialect.makeRequest(for: loaded, allocator: Self.allocator)
        }.nonisolated()
    }

    /// `503` with `Retry-After`: the daemon is full (`limit` says which limit), counted as `reason`.
    private func refuseOverCapacity(reason: String, limit: String) {
        self.environment.metrics.handoffError(reason)
        let response = ErrorResponse(
            status: .serviceUnavailable,
            error: "over_capacity",
            message: "the server is at its \(limit); retry shortly",
            retryAfter: .seconds(self.environment.configuration.limits.retryAfterSeconds)
        )
        self.perform(self.machine.rejected(response))
    }

    // MARK: Source reports

    /// The source's upstream answered `2xx`. `flush`: send the head now rather than with the
    /// first event (an upstream may take a while to its first token).
    func sourceResponded(flush: Bool = false) {
        self.perform(self.machine.sourceResponded())
        if flush { self.sourceSendQueued() }
    }

    /// A content delta. `queued`: more follows at once (the source finishes right after, sends
    /// back to back, or has more events from the same upstream read), so the event waits to
    /// leave with what follows in one write (``sourceSendQueued()``, or the final bytes).
    func sourceProducedContent(_ content: String, queued: Bool = false) {
        guard self.machine.sourceProducedEvent() == .writeEvent else { return }
        var buffer = Self.allocator.buffer(capacity: content.utf8.count + 24)
        let id = self.writeEventID(into: &buffer)
        HandoffEvents.writeContent(content, into: &buffer)
        self.completion?.append(content)
        self.record(id, buffer)
        self.send(buffer, queued: queued)
    }

    /// An event's complete bytes, sent as they are (a recorded event, a channel message).
    func sourceProducedRaw(_ bytes: ByteBuffer, queued: Bool = false) {
        guard self.machine.sourceProducedEvent() == .writeEvent else { return }
        self.send(bytes, queued: queued)
    }

    /// A resumable stream's next event id, written as the event's `id:` line; nil otherwise.
    private func writeEventID(into buffer: inout ByteBuffer) -> Int64? {
        guard let id = self.recording?.nextID else { return nil }
        self.recording!.nextID = id + 1
        buffer.writeStaticString("id: ")
        buffer.writeDecimal(id)
        buffer.writeStaticString("\n")
        return id
    }

    /// Records event `id` of a resumable stream; a detached stream that can no longer be
    /// recorded is stopped (nobody would ever see its events).
    private func record(_ id: Int64?, _ bytes: ByteBuffer, final: Bool = false) {
        guard let id, let recording = self.recording else { return }
        recording.recorder?.append(id: id, event: bytes, final: final)
        if !final, self.machine.state == .detached, !recording.isWorthRunningDetached {
            self.releaseSource(cancel: true)
            self.finalize()
        }
    }

    /// Sends what ``sourceProducedContent(_:queued:)`` and ``sourceProducedEvent(_:queued:)`` queued.
    func sourceSendQueued() {
        if self.connection?.flush() == true { self.updateWriteProgress() }
    }

    /// A native event to pass through unchanged (LangGraph).
    func sourceProducedEvent(_ event: SSEEvent, queued: Bool = false) {
        guard self.machine.sourceProducedEvent() == .writeEvent else { return }
        var buffer = Self.allocator.buffer(capacity: event.data.utf8.count + 32)
        let id = self.writeEventID(into: &buffer)
        SSEEncoder.writeEvent(event.data, event: event.event, id: id == nil ? event.id : nil, into: &buffer)
        self.completion?.events += 1
        self.record(id, buffer)
        self.send(buffer, queued: queued)
    }

    /// One event's bytes: queued to leave with what follows, or written now.
    private func send(_ buffer: ByteBuffer, queued: Bool) {
        self.log?.events &+= 1
        if queued {
            self.recordFirstByte()
            self.countSent(buffer.readableBytes, events: 1)
            self.connection?.enqueue(buffer)
        } else {
            self.write(buffer, events: 1)
        }
    }

    /// A `: ping` comment during upstream silence.
    func sourceProducedKeepAlive() {
        guard self.machine.sourceProducedEvent() == .writeEvent else { return }
        self.write(HTTPResponse.pingComment)
    }

    /// The upstream answered with `status`, or failed before answering (`nil`).
    func recordUpstreamResponse(status: Int?) {
        self.environment.metrics.upstreamResponse(status: status)
        self.log?.upstreamStatus = status.map { UInt16(clamping: $0) }
    }

    /// The source failed: before the head the client gets `response`, after it an error event.
    func sourceFailed(response: ErrorResponse, message: String, reason: String, detail: String?, upstreamStatus: Int?) {
        self.environment.logger.debug(
            "stream failed",
            metadata: ["reason": "\(reason)", "detail": "\(detail ?? "")", "upstream_status": "\(upstreamStatus.map(String.init) ?? "")"]
        )
        self.log?.failure = reason
        self.completion?.failure = (reason, message)
        self.perform(self.machine.sourceFailed(response: response, message: message, reason: reason))
    }

    /// The source finished; `final` are the last bytes (`[DONE]`, or a recording's own last event).
    func sourceFinished(final: StreamStateMachine.FinalBytes = .done) {
        self.completion?.finished = true
        self.perform(self.machine.sourceFinished(final: final))
    }

    /// Called on the loop by the drain logic.
    func shutdownDeadlinePassed() {
        let response = ErrorResponse(
            status: .serviceUnavailable,
            error: "shutting_down",
            message: "the server is shutting down; retry shortly",
            retryAfter: .seconds(self.environment.configuration.limits.retryAfterSeconds)
        )
        self.completion?.shutdown = true
        self.perform(self.machine.shutdownDeadlinePassed(response: response))
    }

    // MARK: Connection events

    func connectionSentWaitingBytes() {
        self.updateWriteProgress()
    }

    /// Looks at the connection after anything was written: runs the write-progress timer while
    /// bytes wait (every step forward moves its deadline), and once nothing waits, stops it and
    /// resumes the source, or completes the final write.
    private func updateWriteProgress() {
        guard let connection = self.connection else { return }
        switch self.writeProgress.observe(pendingBytes: connection.pendingBytes, sentBytes: connection.sentBytes) {
        case .none:
            return
        case .armTimer:
            // Armed once; a step forward only moves the deadline, which the timer checks when
            // due. A deadline that came closer (a shorter timeout now applies) re-arms it.
            let deadline = NIODeadline.now() + TimeAmount(self.writeTimeout)
            let closer = deadline < self.writeDeadline
            self.writeDeadline = deadline
            if self.timerPurpose != .writeProgress || closer { self.armTimer(.writeProgress, after: self.writeTimeout) }
        case .drained:
            if self.timerPurpose == .writeProgress { self.cancelTimer() }
            if self.machine.state == .flushing {
                self.perform(self.machine.finalWriteCompleted())
            } else {
                self.source?.resume()
            }
        }
    }

    func connectionClosed() {
        self.connection = nil
        self.perform(self.machine.connectionClosed())
        if self.machine.state != .detached { self.finalize() }
    }

    // MARK: Actions

    private func perform(_ action: StreamStateMachine.Action) {
        switch action {
        case .none, .writeEvent:
            return
        case .writeHead:
            // Queued, not sent: it leaves with the first event in one syscall.
            let head = HTTPResponse.streamHead(extraHeaders: self.extraHeaders, allocator: Self.allocator)
            self.extraHeaders = []
            self.countSent(head.readableBytes)
            self.log?.status = 200
            self.connection?.enqueue(head)
        case .writeFinal(let bytes, let cancelSource):
            self.releaseSource(cancel: cancelSource)
            self.writeFinal(bytes)
        case .shutdownOutput:
            self.cancelTimer()
            self.connection?.shutdownOutput()
            let linger = self.environment.configuration.timeouts.linger
            if linger > .zero {
                self.armTimer(.linger, after: linger)
            } else {
                self.perform(self.machine.lingerTimedOut())
            }
        case .close(let cancelSource):
            self.releaseSource(cancel: cancelSource)
            self.cancelTimer()
            let connection = self.connection
            self.connection = nil
            connection?.close()
            self.finalize()
        case .detach:
            self.cancelTimer()
            let connection = self.connection
            self.connection = nil
            connection?.close()
            self.descriptorReleased = true
            self.environment.capacity.clientDescriptorClosed()
            if self.recording?.isWorthRunningDetached != true {
                self.releaseSource(cancel: true)
                self.finalize()
            } else {
                // A source paused for the client it no longer has: only the recording reads now.
                self.source?.resume()
            }
        case .recordFinal(let bytes, let cancelSource):
            self.releaseSource(cancel: cancelSource)
            _ = self.finalBytes(bytes)
            self.finalize()
        }
    }

    private var writeTimeout: Duration {
        self.machine.outcome == .rejected
            ? min(self.environment.configuration.timeouts.write, self.environment.configuration.timeouts.rejectionWrite)
            : self.environment.configuration.timeouts.write
    }

    private func recordFirstByte() {
        guard !self.firstByteRecorded else { return }
        self.firstByteRecorded = true
        let elapsed = (NIODeadline.now() - self.startedAt).nanoseconds
        self.firstByteNanoseconds = elapsed
        self.environment.metrics.timeToFirstByte.recordNanoseconds(elapsed)
    }

    /// Counts bytes (and events) for the metrics, in the loop's batch (passed on at a stream's
    /// end and every 256 events), and for the access log.
    private func countSent(_ bytes: Int, events: Int = 0) {
        self.loop.countSent(bytes: bytes, events: events)
        if events > 0 { self.loop.reportSent(to: self.environment.metrics, ifAtLeast: 256) }
        self.log?.bytes += bytes
    }

    private func write(_ buffer: ByteBuffer, events: Int = 0) {
        guard let connection = self.connection else { return }
        self.recordFirstByte()
        self.countSent(buffer.readableBytes, events: events)
        guard connection.write(buffer) else { return }  // closed: connectionClosed did the rest
        self.updateWriteProgress()
    }

    /// The last bytes of a connection, recorded when the stream is (an error response instead
    /// releases the stream id: the stream never began).
    private func finalBytes(_ bytes: StreamStateMachine.FinalBytes) -> ByteBuffer {
        var buffer: ByteBuffer
        switch bytes {
        case .done:
            buffer = Self.allocator.buffer(capacity: 32)
            let id = self.writeEventID(into: &buffer)
            HandoffEvents.writeDone(into: &buffer)
            self.record(id, buffer, final: true)
        case .errorEvent(let message, let reason):
            buffer = Self.allocator.buffer(capacity: 80 + message.utf8.count)
            let id = self.writeEventID(into: &buffer)
            HandoffEvents.writeError(message, reason: reason, into: &buffer)
            self.record(id, buffer, final: true)
        case .recorded(let bytes):
            buffer = bytes
        case .errorResponse(let response):
            self.recording?.recorder?.abandon()
            self.log?.status = UInt16(clamping: response.status.code)
            self.environment.metrics.rejection(status: response.status.code)
            buffer = HTTPResponse.error(
                response.status,
                error: response.error,
                message: response.message,
                retryAfter: response.retryAfter,
                upstreamStatus: response.upstreamStatus,
                allocator: Self.allocator
            )
        }
        return buffer
    }

    private func writeFinal(_ bytes: StreamStateMachine.FinalBytes) {
        guard let connection = self.connection else { return }
        let buffer = self.finalBytes(bytes)
        self.countSent(buffer.readableBytes)
        guard connection.write(buffer) else { return }  // closed: connectionClosed did the rest
        if connection.hasPendingWrites {
            self.updateWriteProgress()
        } else {
            if self.timerPurpose == .writeProgress { self.cancelTimer() }
            self.writeProgress = WriteProgress()
            self.perform(self.machine.finalWriteCompleted())
        }
    }

    private func releaseSource(cancel: Bool) {
        guard let source = self.source else { return }
        self.summary = source.summary
        self.source = nil
        if cancel {
            source.cancel()
            if source is any UpstreamCancellable { self.environment.metrics.upstreamCancellations.increment() }
        }
    }

    // MARK: Timer

    private func armTimer(_ purpose: TimerPurpose, after duration: Duration) {
        self.timerPurpose = purpose
        self.wheelTimer.arm(self, on: self.loop.wheel, after: TimeAmount(duration))
    }

    private func cancelTimer() {
        self.timerPurpose = .none
        self.wheelTimer.cancel(on: self.loop.wheel)
    }

    func timerFired(token: UInt32) {
        guard self.wheelTimer.fired(token) else { return }
        let purpose = self.timerPurpose
        self.timerPurpose = .none
        switch purpose {
        case .none: return
        case .writeProgress:
            let now = NIODeadline.now()
            if now < self.writeDeadline {  // the client took bytes since the timer was armed
                self.timerPurpose = .writeProgress
                self.wheelTimer.arm(self, on: self.loop.wheel, after: self.writeDeadline - now)
                return
            }
            self.perform(self.machine.writeTimedOut())
        case .linger: self.perform(self.machine.lingerTimedOut())
        }
    }


    // MARK: End

    private func finalize() {
        guard !self.finalized else { return }
        self.finalized = true
        self.loop.reportSent(to: self.environment.metrics)
        self.releaseSource(cancel: true)
        self.cancelTimer()
        if !self.descriptorReleased { self.environment.capacity.clientDescriptorClosed() }
        if self.admittedAsStream {
            self.loop.registry.remove(self)
            self.environment.capacity.releaseStream()
            self.environment.metrics.activeStreams.decrement()
            self.environment.metrics.streamDuration.recordNanoseconds((NIODeadline.now() - self.startedAt).nanoseconds)
        }
        let outcome = self.machine.outcome ?? .clientDisconnected
        if outcome == .clientDisconnected { self.environment.metrics.clientDisconnects.increment() }
        self.environment.metrics.stream(outcome: outcome)
        if let accessLog = self.environment.accessLog, let log = self.log {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            accessLog.record(log.line(
                seconds: now.tv_sec,
                nanoseconds: now.tv_nsec,
                timeToFirstByteNanoseconds: self.firstByteNanoseconds,
                durationNanoseconds: (NIODeadline.now() - self.startedAt).nanoseconds,
                outcome: outcome,
                summary: self.summary
            ))
        }
        self.log = nil
        if let completion = self.completion, let completions = self.environment.completions, outcome != .rejected {
            self.completion = nil
            completion.summary = self.summary
            completion.clientDisconnected = outcome == .clientDisconnected || outcome == .writeTimeout
            completion.timeToFirstByteNanoseconds = self.firstByteNanoseconds
            completion.durationNanoseconds = (NIODeadline.now() - self.startedAt).nanoseconds
            completions.submit(completion)
        }
    }
}
