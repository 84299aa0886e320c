import HandoffRequest

/// What the access log records about one stream; Apache cannot log any of it, since the
/// response never passes through Apache.
struct AccessLogFields {
    var requestID: String?
    var userID: String?
    var backend: String
    var model: String?
    var status = 0
    var timeToFirstByteNanoseconds: Int64?
    var durationNanoseconds: Int64 = 0
    var bytes = 0
    var events = 0
    var upstreamStatus: Int?
    var failure: String?
    var outcome: StreamStateMachine.Outcome?
    var summary = StreamSummary()

    init(request: HandoffRequest, backend: BackendKind) {
        self.requestID = request.requestID
        self.userID = request.userID
        self.backend = backend.rawValue
        self.model = request.model
    }

    /// The line for this stream (without the newline), ended at `time` (seconds and
    /// nanoseconds since the epoch). Every value is escaped, so whatever an upstream or a
    /// handoff put in a field, the stream is one line.
    func line(seconds: Int, nanoseconds: Int) -> String {
        var line = AccessLogLine(seconds: seconds, nanoseconds: nanoseconds)
        line.append("request_id", self.requestID)
        line.append("user_id", self.userID)
        line.append("backend", self.backend)
        line.append("model", self.model)
        line.append("status", String(self.status))
        if let ttfb = self.timeToFirstByteNanoseconds { line.append("ttfb_ms", String(Double(ttfb / 1000) / 1000)) }
        line.append("duration_ms", String(self.durationNanoseconds / 1_000_000))
        line.append("bytes", String(self.bytes))
        line.append("events", String(self.events))
        line.append("outcome", self.outcome?.rawValue ?? "unknown")
        if let upstreamStatus { line.append("upstream_status", String(upstreamStatus)) }
        line.append("error", self.failure)
        line.append("finish_reason", self.summary.finishReason)
        if let tokens = self.summary.promptTokens { line.append("prompt_tokens", String(tokens)) }
        if let tokens = self.summary.completionTokens { line.append("completion_tokens", String(tokens)) }
        return line.text
    }
}
