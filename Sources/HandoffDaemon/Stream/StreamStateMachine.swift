import NIOCore

/// The life of one client connection, from the moment its fd is adopted to its close.
///
/// Pure: it takes events and returns the action its owner (``StreamHandler``) must perform.
/// It never touches a channel, a timer or a clock, so every path is tested without I/O.
///
///     awaitingHead ──responded──► streaming ──finished / failed / shutdown──┐
///          │                          │                                   ▼
///          └──rejected / failed───────┴──────────────────────────────► flushing
///                                                                         │ final write done
///     (client gone / write timeout from any state) ──► closed ◄── lingering ◄┘
struct StreamStateMachine: Sendable {
    /// Where the connection is.
    enum State: Sendable, Equatable {
        /// The source has not answered yet; nothing has been written.
        case awaitingHead
        /// The `200` head is out; events flow.
        case streaming
        /// The last bytes are written; waiting for them to reach the kernel.
        case flushing
        /// The write side is shut down; waiting briefly for the client to close.
        case lingering
        /// Closed. Nothing more happens.
        case closed
        /// The client is gone but the source goes on, recorded only (a resumable stream).
        case detached
    }

    /// How a stream (or a connection that never streamed) ended, for metrics and the access log.
    enum Outcome: String, Sendable, Equatable, CaseIterable {
        case completed
        case rejected
        case upstreamFailed = "upstream_failed"
        case failedMidStream = "failed_mid_stream"
        case shutdown
        case clientDisconnected = "client_disconnected"
        case writeTimeout = "write_timeout"
    }

    /// What the owner must do.
    enum Action: Sendable, Equatable {
        /// Nothing.
        case none
        /// Write the `200` stream head.
        case writeHead
        /// Write this event's bytes (only while streaming).
        case writeEvent
        /// Write the last bytes, then report ``StreamStateMachine/finalWriteCompleted()``.
        /// `cancelSource`: stop the source first (it is still producing).
        case writeFinal(FinalBytes, cancelSource: Bool)
        /// Shut down the write side and start the linger timer.
        case shutdownOutput
        /// Close the connection now. `cancelSource`: the source is still running.
        case close(cancelSource: Bool)
        /// Close the connection but keep the source running: a resumable stream's events go
        /// on being recorded without a client.
        case detach
        /// A detached stream ended: record these last bytes, then finish.
        /// `cancelSource`: stop the source first (it is still producing).
        case recordFinal(FinalBytes, cancelSource: Bool)
    }

    /// The last bytes of a connection.
    enum FinalBytes: Sendable, Equatable {
        /// A complete error response (status line to body): nothing else was sent.
        case errorResponse(ErrorResponse)
        /// `data: [DONE]`.
        case done
        /// `event: error` with this message and reason; no `[DONE]`.
        case errorEvent(message: String, reason: String)
        /// A recorded stream's own last event, replayed as it was.
        case recorded(ByteBuffer)
    }

    private(set) var state: State = .awaitingHead
    private(set) var outcome: Outcome?
    /// When the client leaves (or stalls) mid-stream, detach instead of closing: the source
    /// goes on (a resumable stream, which is recorded). Default false.
    var keepsSourceWithoutClient = false

    /// The source answered with a successful head.
    mutating func sourceResponded() -> Action {
        guard self.state == .awaitingHead else { return .none }
        self.state = .streaming
        return .writeHead
    }

    /// The source produced an event.
    mutating func sourceProducedEvent() -> Action {
        self.state == .streaming || self.state == .detached ? .writeEvent : .none
    }

    /// The source finished normally; `final` are its last bytes.
    mutating func sourceFinished(final: FinalBytes = .done) -> Action {
        if self.state == .detached {
            self.state = .closed
            return .recordFinal(final, cancelSource: false)
        }
        guard self.state == .streaming else { return .none }
        return self.finish(final, outcome: .completed, cancelSource: false)
    }

    /// The source failed. Before the head this becomes an error response (`response`); after
    /// it, an error event with `message` and `reason`.
    mutating func sourceFailed(response: ErrorResponse, message: String, reason: String) -> Action {
        switch self.state {
        case .awaitingHead:
            return self.finish(.errorResponse(response), outcome: .upstreamFailed, cancelSource: false)
        case .streaming:
            return self.finish(.errorEvent(message: message, reason: reason), outcome: .failedMidStream, cancelSource: false)
        case .detached:
            self.state = .closed
            return .recordFinal(.errorEvent(message: message, reason: reason), cancelSource: false)
        case .flushing, .lingering, .closed:
            return .none
        }
    }

    /// The handoff was refused before any source started (bad JSON, over capacity, …).
    mutating func rejected(_ response: ErrorResponse) -> Action {
        guard self.state == .awaitingHead else { return .none }
        return self.finish(.errorResponse(response), outcome: .rejected, cancelSource: false)
    }

    /// The drain deadline passed (or a forced shutdown): end the stream with an error.
    mutating func shutdownDeadlinePassed(response: ErrorResponse) -> Action {
        switch self.state {
        case .awaitingHead:
            return self.finish(.errorResponse(response), outcome: .shutdown, cancelSource: true)
        case .streaming:
            return self.finish(
                .errorEvent(message: "the server is shutting down", reason: "shutdown"),
                outcome: .shutdown,
                cancelSource: true
            )
        case .detached:
            self.state = .closed
            return .recordFinal(.errorEvent(message: "the server is shutting down", reason: "shutdown"), cancelSource: true)
        case .flushing, .lingering, .closed:
            return .none
        }
    }

    /// The last bytes reached the kernel.
    mutating func finalWriteCompleted() -> Action {
        guard self.state == .flushing else { return .none }
        self.state = .lingering
        return .shutdownOutput
    }

    /// The linger time is over without the client closing.
    mutating func lingerTimedOut() -> Action {
        guard self.state == .lingering else { return .none }
        self.state = .closed
        return .close(cancelSource: false)
    }

    /// A write made no progress within the write timeout.
    mutating func writeTimedOut() -> Action {
        self.abort(outcome: .writeTimeout)
    }

    /// The connection closed under us: client EOF or reset, or a write error.
    mutating func connectionClosed() -> Action {
        switch self.state {
        case .lingering, .flushing:
            // The response was complete; the client closing now is the normal end.
            self.state = .closed
            return .close(cancelSource: false)
        case .awaitingHead, .streaming:
            return self.abort(outcome: .clientDisconnected)
        case .closed, .detached:
            return .none
        }
    }

    private mutating func abort(outcome: Outcome) -> Action {
        switch self.state {
        case .awaitingHead where self.keepsSourceWithoutClient, .streaming where self.keepsSourceWithoutClient:
            self.state = .detached
            self.outcome = outcome
            return .detach
        case .awaitingHead, .streaming:
            self.state = .closed
            self.outcome = outcome
            return .close(cancelSource: true)
        case .flushing, .lingering:
            self.state = .closed
            if outcome == .writeTimeout { self.outcome = .writeTimeout }
            return .close(cancelSource: false)
        case .closed, .detached:
            return .none
        }
    }

    private mutating func finish(_ bytes: FinalBytes, outcome: Outcome, cancelSource: Bool) -> Action {
        self.state = .flushing
        self.outcome = outcome
        return .writeFinal(bytes, cancelSource: cancelSource)
    }
}

/// A complete error response the client receives instead of a stream.
struct ErrorResponse: Sendable, Equatable {
    var status: HTTPStatus
    /// A stable machine-readable code for the JSON body.
    var error: String
    /// A human-readable message for the JSON body.
    var message: String
    /// `Retry-After`, when the client should retry.
    var retryAfter: RetryAfter?
    /// The upstream's status, when it answered with an error.
    var upstreamStatus: Int?

    init(status: HTTPStatus, error: String, message: String, retryAfter: RetryAfter? = nil, upstreamStatus: Int? = nil) {
        self.status = status
        self.error = error
        self.message = message
        self.retryAfter = retryAfter
        self.upstreamStatus = upstreamStatus
    }
}
