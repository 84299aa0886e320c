import HandoffRequest
import NIOCore

/// What the access log records about one stream; Apache cannot log any of it, since the
/// response never passes through Apache.
///
/// Kept small, since every stream carries it while it runs: what the stream knows anyway
/// (time to first byte, duration, outcome, usage) is passed in when the line is written.
struct AccessLogFields {
    var requestID: String?
    var userID: String?
    var model: String?
    var failure: String?
    var bytes = 0
    var events: UInt32 = 0
    var backend: BackendKind
    var status: UInt16 = 0
    var upstreamStatus: UInt16?

    init(request: HandoffRequest, backend: BackendKind) {
        self.requestID = request.requestID
        self.userID = request.userID
        self.backend = backend
        self.model = request.model
    }

    /// The line for this stream (without the newline), ended at `time` (seconds and
    /// nanoseconds since the epoch). Every value is escaped, so whatever an upstream or a
    /// handoff put in a field, the stream is one line.
    func line(
        seconds: Int,
        nanoseconds: Int,
        timeToFirstByteNanoseconds: Int64?,
        durationNanoseconds: Int64,
        outcome: StreamStateMachine.Outcome,
        summary: StreamSummary
    ) -> ByteBuffer {
        var line = AccessLogLine(seconds: seconds, nanoseconds: nanoseconds)
        line.append("request_id", self.requestID)
        line.append("user_id", self.userID)
        line.append("backend", self.backend.rawValue)
        line.append("model", self.model)
        line.append("status", integer: Int64(self.status))
        if let ttfb = timeToFirstByteNanoseconds { line.append("ttfb_ms", millisecondsFromMicroseconds: ttfb / 1000) }
        line.append("duration_ms", integer: durationNanoseconds / 1_000_000)
        line.append("bytes", integer: Int64(self.bytes))
        line.append("events", integer: Int64(self.events))
        line.append("outcome", outcome.rawValue)
        if let upstreamStatus { line.append("upstream_status", integer: Int64(upstreamStatus)) }
        line.append("error", self.failure)
        line.append("finish_reason", summary.finishReason)
        if let tokens = summary.promptTokens { line.append("prompt_tokens", integer: Int64(tokens)) }
        if let tokens = summary.completionTokens { line.append("completion_tokens", integer: Int64(tokens)) }
        return line.bytes
    }
}
