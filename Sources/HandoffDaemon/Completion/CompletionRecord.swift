import HandoffRequest
import HandoffSSE
import NIOCore

/// What the application is told about one finished stream, gathered while it runs.
///
/// The document is one JSON object (keys in this order):
///
///     {"delivery_id":"…","stream_id":"…"|null,"request_id":"…"|null,"user_id":"…"|null,
///      "backend":"openai","model":"…"|null,"status":"completed",
///      "finish_reason":"stop"|null,"text":"the whole answer","text_truncated":false,
///      "usage":{"prompt_tokens":12,"completion_tokens":40,"total_tokens":52}|null,
///      "error":{"reason":"…","message":"…"}|null,"client_disconnected":false,
///      "events":41,"started_at_ms":1764600000000,"ttfb_ms":12.5|null,"duration_ms":2040}
///
/// A class: the stream holds a reference (8 bytes, nil when callbacks are off) rather than
/// ~230 bytes inline in every stream.
///
/// `status` is how generation ended: `completed`, `failed` (before or after the first
/// event), `cancelled` (the client left and nothing kept it going) or `shutdown`.
final class CompletionRecord {
    var streamID: String?
    var requestID: String?
    var userID: String?
    var backend: String
    var model: String?
    var text = ""
    var textTruncated = false
    var finished = false
    var failure: (reason: String, message: String)?
    var clientDisconnected = false
    var shutdown = false
    var events = 0
    var startedAtMilliseconds: Int64
    var timeToFirstByteNanoseconds: Int64?
    var durationNanoseconds: Int64 = 0
    var summary = StreamSummary()

    /// The most text kept for the document; past it the text is cut and marked.
    static let maxTextBytes = 4 << 20

    init(request: HandoffRequest, backend: String, model: String?, startedAtMilliseconds: Int64) {
        self.streamID = request.streamID
        self.requestID = request.requestID
        self.userID = request.userID
        self.backend = backend
        self.model = model
        self.startedAtMilliseconds = startedAtMilliseconds
    }

    func append(_ content: String) {
        self.events += 1
        guard !self.textTruncated else { return }
        if self.text.utf8.count + content.utf8.count > Self.maxTextBytes {
            self.textTruncated = true
        } else {
            self.text += content
        }
    }

    var status: String {
        if self.finished { return "completed" }
        if self.failure != nil { return "failed" }
        if self.shutdown { return "shutdown" }
        return "cancelled"
    }

    func document(deliveryID: String) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 512 + self.text.utf8.count + self.text.utf8.count / 8)
        buffer.writeStaticString("{\"delivery_id\":")
        buffer.writeJSONString(deliveryID)
        Self.member("stream_id", self.streamID, into: &buffer)
        Self.member("request_id", self.requestID, into: &buffer)
        Self.member("user_id", self.userID, into: &buffer)
        Self.member("backend", self.backend, into: &buffer)
        Self.member("model", self.model, into: &buffer)
        Self.member("status", self.status, into: &buffer)
        Self.member("finish_reason", self.summary.finishReason, into: &buffer)
        Self.member("text", self.text, into: &buffer)
        buffer.writeString(",\"text_truncated\":\(self.textTruncated)")
        buffer.writeStaticString(",\"usage\":")
        if self.summary.promptTokens != nil || self.summary.completionTokens != nil {
            let prompt = self.summary.promptTokens ?? 0
            let completion = self.summary.completionTokens ?? 0
            buffer.writeString("{\"prompt_tokens\":\(prompt),\"completion_tokens\":\(completion),\"total_tokens\":\(prompt + completion)}")
        } else {
            buffer.writeStaticString("null")
        }
        buffer.writeStaticString(",\"error\":")
        if let failure = self.failure {
            buffer.writeStaticString("{\"reason\":")
            buffer.writeJSONString(failure.reason)
            buffer.writeStaticString(",\"message\":")
            buffer.writeJSONString(failure.message)
            buffer.writeStaticString("}")
        } else {
            buffer.writeStaticString("null")
        }
        buffer.writeString(",\"client_disconnected\":\(self.clientDisconnected),\"events\":\(self.events)")
        buffer.writeString(",\"started_at_ms\":\(self.startedAtMilliseconds)")
        buffer.writeStaticString(",\"ttfb_ms\":")
        if let ttfb = self.timeToFirstByteNanoseconds {
            buffer.writeString(String(Double(ttfb / 1000) / 1000))
        } else {
            buffer.writeStaticString("null")
        }
        buffer.writeString(",\"duration_ms\":\(self.durationNanoseconds / 1_000_000)}")
        return buffer
    }

    private static func member(_ name: StaticString, _ value: String?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(",\"")
        buffer.writeStaticString(name)
        buffer.writeStaticString("\":")
        if let value {
            buffer.writeJSONString(value)
        } else {
            buffer.writeStaticString("null")
        }
    }
}
