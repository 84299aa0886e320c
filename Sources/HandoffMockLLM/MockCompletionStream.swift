import HandoffSSE
import Foundation
import NIOCore

/// One streamed answer: OpenAI `chat.completion.chunk` events or LangGraph events, on timers,
/// shaped and broken as the ``TestPattern`` says.
final class MockCompletionStream {
    enum Kind {
        case openAI
        case langGraph(threadID: String?)
    }

    private let kind: Kind
    private let model: String
    private let pattern: TestPattern
    private let chunkCount: Int
    private let echo: String?
    private let chunkDelay: TimeAmount
    private let writer: any MockResponseWriter
    private let onEnd: (MockStats.Outcome) -> Void
    private let stats: MockStats
    private var goAwaySent = false
    private var sent = 0
    private var finishSent = false
    private var timer: Scheduled<Void>?
    private var cancelled = false
    /// Paused because the reader is not taking the bytes (the channel is not writable).
    private var waitingForWritability = false
    private var cumulative = ""
    private let id = "chatcmpl-mock-\(UInt32.random(in: 0...UInt32.max))"

    init(
        kind: Kind,
        model: String,
        pattern: TestPattern,
        chunkCount: Int,
        echo: String? = nil,
        chunkDelay: TimeAmount,
        writer: any MockResponseWriter,
        stats: MockStats,
        onEnd: @escaping (MockStats.Outcome) -> Void
    ) {
        self.stats = stats
        self.kind = kind
        self.model = model
        self.pattern = pattern
        self.chunkCount = max(1, chunkCount)
        self.echo = echo
        self.chunkDelay = chunkDelay
        self.writer = writer
        self.onEnd = onEnd
    }

    func start() {
        switch self.pattern.fault {
        case .status(let code):
            self.respondWithStatus(code)
        case .stall(let milliseconds):
            self.schedule(after: .milliseconds(Int64(milliseconds))) { $0.beginStream() }
        case .refuseOnce(let token) where self.writer.http2StreamID != nil && self.stats.firstSighting(of: token):
            // RST_STREAM(REFUSED_STREAM) before any response: the request was not processed.
            self.onEnd(.failed)
            self.writer.refuse()
        case .goAwayRefuseOnce(let token) where self.writer.http2StreamID != nil && self.stats.firstSighting(of: token):
            // A GOAWAY whose last stream id is below this one's: it was not processed.
            self.goAwaySent = true
            self.writer.goAway(lastStreamID: max(0, self.writer.http2StreamID! - 2))
            self.onEnd(.failed)
            self.writer.reset()
        default:
            self.beginStream()
        }
    }

    func cancel() {
        self.cancelled = true
        self.timer?.cancel()
        self.timer = nil
    }

    // MARK: Steps

    private func beginStream() {
        var headers = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
        if self.pattern.fault == .overlong { headers.append(("content-length", "1")) }
        self.writer.writeHead(status: 200, headers: headers)
        if case .langGraph(let threadID) = self.kind {
            let thread = threadID.map { #","thread_id":"\#($0)""# } ?? ""
            self.writeEvent(name: "metadata", json: #"{"run_id":"mock-run-\#(self.id.suffix(8))","attempt":1\#(thread)}"#, flush: false)
        }
        self.step()
    }

    /// The channel is writable again: the stream goes on where it waited.
    func resumeIfWaiting() {
        guard self.waitingForWritability, !self.cancelled else { return }
        self.waitingForWritability = false
        self.step()
    }

    /// Sends the next chunk (or the fault, or the end) and schedules the one after; waits while
    /// the reader does not take the bytes (backpressure), so a stalled reader costs a bounded
    /// amount of memory.
    private func step() {
        guard !self.cancelled else { return }
        guard self.writer.isWritable else {
            self.writer.flush()
            self.waitingForWritability = true
            return
        }
        switch self.pattern.fault {
        case .abort(let after) where self.sent >= after:
            self.endBody(outcome: .failed)
            return
        case .hang(let after) where self.sent >= after:
            self.writer.flush()
            return
        case .reset(let after) where self.sent >= after:
            self.resetStream()
            return
        case .goAway(let after) where self.sent >= after && !self.goAwaySent:
            // A graceful GOAWAY: every stream opened so far finishes, no new one starts here.
            if self.writer.http2StreamID != nil {
                self.goAwaySent = true
                self.writer.goAway(lastStreamID: Int(Int32.max))
            }
        case .malformed where self.sent == 1:
            self.writeRaw(#"data: {"choices":[{"index":0,"delta":{"content":"bro"#, flush: true)
            self.writeRaw("\n\n", flush: true)
        default:
            break
        }
        if self.sent < self.chunkCount {
            self.writeContent(self.echo ?? self.pattern.chunk(self.sent))
            self.sent += 1
            self.schedule(after: self.chunkDelay) { $0.step() }
        } else if !self.finishSent {
            self.finishSent = true
            self.writeFinish()
            self.schedule(after: self.chunkDelay) { $0.writeDoneAndEnd() }
        }
    }

    private func writeDoneAndEnd() {
        if case .openAI = self.kind { self.writeRaw("data: [DONE]" + self.lineEnd + self.lineEnd, flush: false) }
        self.endBody(outcome: .completed)
    }

    private var lineEnd: String { self.pattern.crlf ? "\r\n" : "\n" }

    private func writeContent(_ text: String) {
        switch self.kind {
        case .openAI:
            let role = self.sent == 0 ? #""role":"assistant","# : ""
            self.writeEvent(
                name: nil,
                json: #"{"id":"\#(self.id)","object":"chat.completion.chunk","created":0,"model":\#(Self.jsonString(self.model)),"choices":[{"index":0,"delta":{\#(role)"content":\#(Self.jsonString(text))},"finish_reason":null}]}"#,
                flush: true
            )
        case .langGraph:
            self.cumulative += text
            self.writeEvent(
                name: "messages/partial",
                json: #"[{"type":"AIMessageChunk","id":"\#(self.id)","content":\#(Self.jsonString(self.cumulative))}]"#,
                flush: true
            )
        }
    }

    private func writeFinish() {
        switch self.kind {
        case .openAI:
            let usage = #"{"prompt_tokens":10,"completion_tokens":\#(self.sent),"total_tokens":\#(10 + self.sent)}"#
            self.writeEvent(
                name: nil,
                json: #"{"id":"\#(self.id)","object":"chat.completion.chunk","created":0,"model":\#(Self.jsonString(self.model)),"choices":[{"index":0,"delta":{},"finish_reason":\#(Self.jsonString(self.pattern.finishReason))}],"usage":\#(usage)}"#,
                flush: true
            )
        case .langGraph:
            self.writeEvent(
                name: "values",
                json: #"{"messages":[{"type":"ai","id":"\#(self.id)","content":\#(Self.jsonString(self.cumulative))}]}"#,
                flush: true
            )
        }
    }

    private func writeEvent(name: String?, json: String, flush: Bool) {
        var text = ""
        if self.pattern.comments { text += ": mock comment" + self.lineEnd }
        if let name { text += "event: " + name + self.lineEnd }
        if self.pattern.multiline, let comma = json.firstIndex(of: ",") {
            text += "data: " + json[...comma] + self.lineEnd + "data: " + json[json.index(after: comma)...] + self.lineEnd
        } else {
            text += "data: " + json + self.lineEnd
        }
        self.writeRaw(text + self.lineEnd, flush: flush)
    }

    private func writeRaw(_ text: String, flush: Bool) {
        self.writer.writeBody(self.writer.allocator.buffer(string: text))
        if flush { self.writer.flush() }
    }

    private func endBody(outcome: MockStats.Outcome) {
        // Count first: writing the end can close an HTTP/2 stream (and report it) at once.
        self.onEnd(outcome)
        self.writer.end()
    }

    private func respondWithStatus(_ code: Int) {
        let body = #"{"error":{"message":"mock status \#(code)","type":"mock_error","code":\#(code)}}"# + "\n"
        let retryAfter = code == 429 || code == 503 ? [("retry-after", self.pattern.retryAfterAsDate ? TestPattern.retryAfterDate : "7")] : []
        // Count first: writing the end can close an HTTP/2 stream (and report it) at once.
        self.onEnd(.failed)
        self.writer.respond(status: code, json: Array(body.utf8), headers: retryAfter)
    }

    /// RST_STREAM on HTTP/2; a TCP reset on HTTP/1.1.
    private func resetStream() {
        self.writer.flush()
        self.onEnd(.failed)
        self.writer.reset()
    }

    private func schedule(after delay: TimeAmount, _ body: @escaping (MockCompletionStream) -> Void) {
        guard !self.cancelled else { return }
        self.timer = self.writer.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            self.timer = nil
            guard !self.cancelled else { return }
            body(self)
        }
    }

    /// A JSON string literal.
    static func jsonString(_ text: String) -> String {
        var buffer = ByteBuffer()
        buffer.writeJSONString(text)
        return String(buffer: buffer)
    }
}
