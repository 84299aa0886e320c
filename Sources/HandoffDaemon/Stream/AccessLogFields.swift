import Logging

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

    func emit(to logger: Logger) {
        var metadata: Logger.Metadata = [
            "backend": "\(self.backend)",
            "status": "\(self.status)",
            "duration_ms": "\(self.durationNanoseconds / 1_000_000)",
            "bytes": "\(self.bytes)",
            "events": "\(self.events)",
            "outcome": "\(self.outcome?.rawValue ?? "unknown")",
        ]
        if let requestID { metadata["request_id"] = "\(requestID)" }
        if let userID { metadata["user_id"] = "\(userID)" }
        if let model { metadata["model"] = "\(model)" }
        if let ttfb = self.timeToFirstByteNanoseconds { metadata["ttfb_ms"] = "\(Double(ttfb / 1000) / 1000)" }
        if let upstreamStatus { metadata["upstream_status"] = "\(upstreamStatus)" }
        if let failure { metadata["error"] = "\(failure)" }
        if let reason = self.summary.finishReason { metadata["finish_reason"] = "\(reason)" }
        if let tokens = self.summary.promptTokens { metadata["prompt_tokens"] = "\(tokens)" }
        if let tokens = self.summary.completionTokens { metadata["completion_tokens"] = "\(tokens)" }
        logger.info("stream", metadata: metadata)
    }
}
