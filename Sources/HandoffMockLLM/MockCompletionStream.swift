import HandoffSSE
import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2

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
    private let context: ChannelHandlerContext
    private let keepAlive: Bool
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
        context: ChannelHandlerContext,
        keepAlive: Bool,
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
        self.context = context
        self.keepAlive = keepAlive
        self.onEnd = onEnd
    }

    func start() {
        switch self.pattern.fault {
        case .status(let code):
            self.respondWithStatus(code)
        case .stall(let milliseconds):
            self.schedule(after: .milliseconds(Int64(milliseconds))) { $0.beginStream() }
        case .refuseOnce(let token) where self.http2StreamID != nil && self.stats.firstSighting(of: token):
            self.refuseStream()
        case .goAwayRefuseOnce(let token) where self.http2StreamID != nil && self.stats.firstSighting(of: token):
            self.sendGoAway(lastStreamID: self.http2StreamID.map { $0 > 2 ? HTTP2StreamID(Int32($0) - 2) : .rootStream } ?? .rootStream)
            self.onEnd(.failed)
            self.context.close(promise: nil)
        default:
            self.beginStream()
        }
    }

    // MARK: HTTP/2 faults

    /// This stream's id when it is an HTTP/2 stream.
    private var http2StreamID: Int? {
        guard self.context.channel.parent != nil else { return nil }
        return (try? self.context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID)).map { Int($0) }
    }

    /// `RST_STREAM(REFUSED_STREAM)` before any response: the request was not processed.
    private func refuseStream() {
        self.onEnd(.failed)
        guard let codec = try? self.context.pipeline.syncOperations.context(handlerType: HTTP2FramePayloadToHTTP1ServerCodec.self) else {
            self.context.close(promise: nil)
            return
        }
        codec.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.rstStream(.refusedStream)), promise: nil)
    }

    /// A GOAWAY on the connection: streams above `lastStreamID` are not processed.
    private func sendGoAway(lastStreamID: HTTP2StreamID) {
        guard let connection = self.context.channel.parent else { return }
        self.goAwaySent = true
        let frame = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil))
        connection.writeAndFlush(frame, promise: nil)
    }

    func cancel() {
        self.cancelled = true
        self.timer?.cancel()
        self.timer = nil
    }

    // MARK: Steps

    private func beginStream() {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/event-stream; charset=utf-8")
        headers.add(name: "cache-control", value: "no-cache")
        if self.pattern.fault == .overlong { headers.add(name: "content-length", value: "1") }
        if !self.keepAlive { headers.add(name: "connection", value: "close") }
        self.context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
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
        guard self.context.channel.isWritable else {
            self.context.flush()
            self.waitingForWritability = true
            return
        }
        switch self.pattern.fault {
        case .abort(let after) where self.sent >= after:
            self.endBody(outcome: .failed)
            return
        case .hang(let after) where self.sent >= after:
            self.context.flush()
            return
        case .reset(let after) where self.sent >= after:
            self.resetStream()
            return
        case .goAway(let after) where self.sent >= after && !self.goAwaySent:
            // A graceful GOAWAY: every stream opened so far finishes, no new one starts here.
            if self.http2StreamID != nil { self.sendGoAway(lastStreamID: .maxID) }
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
        let buffer = self.context.channel.allocator.buffer(string: text)
        self.context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
        if flush { self.context.flush() }
    }

    private func endBody(outcome: MockStats.Outcome) {
        // Count first: writing the end can close an HTTP/2 stream (and report it) at once.
        self.onEnd(outcome)
        self.context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
        if !self.keepAlive { self.context.close(promise: nil) }
    }

    private func respondWithStatus(_ code: Int) {
        let status = HTTPResponseStatus(statusCode: code)
        var headers = HTTPHeaders()
        let body = #"{"error":{"message":"mock status \#(code)","type":"mock_error","code":\#(code)}}"# + "\n"
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.utf8.count))
        if code == 429 || code == 503 {
            headers.add(name: "retry-after", value: self.pattern.retryAfterAsDate ? TestPattern.retryAfterDate : "7")
        }
        self.context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        self.context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(self.context.channel.allocator.buffer(string: body)))), promise: nil)
        self.onEnd(.failed)
        self.context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
    }

    /// RST_STREAM on HTTP/2 (closing a stream channel early resets it); a TCP reset on HTTP/1.1.
    private func resetStream() {
        self.context.flush()
        let channel = self.context.channel
        self.onEnd(.failed)
        if channel.parent == nil, let provider = channel as? any SocketOptionProvider {
            provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        channel.close(promise: nil)
    }

    private func schedule(after delay: TimeAmount, _ body: @escaping (MockCompletionStream) -> Void) {
        guard !self.cancelled else { return }
        self.timer = self.context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
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
