import Foundation
import NIOCore
import NIOHTTP1

/// Serves one HTTP/1.1 connection or one HTTP/2 stream (through the HTTP/2-to-HTTP/1 codec):
/// the OpenAI- and LangGraph-compatible routes, streams with timers, and fault injection.
final class MockLLMHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let configuration: MockLLMConfiguration
    private let stats: MockStats
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var stream: MockCompletionStream?
    private var streamPattern = "default"
    private var streamEnded = true

    static let maximumBodyBytes = 4 * 1024 * 1024

    init(configuration: MockLLMConfiguration, stats: MockStats) {
        self.configuration = configuration
        self.stats = stats
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = context.channel.allocator.buffer(capacity: 0)
        case .body(var chunk):
            guard (self.body?.readableBytes ?? 0) + chunk.readableBytes <= Self.maximumBodyBytes else {
                self.respond(context, status: .payloadTooLarge, json: #"{"error":{"message":"body too large"}}"#)
                self.head = nil
                return
            }
            self.body?.writeBuffer(&chunk)
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            let body = self.body ?? context.channel.allocator.buffer(capacity: 0)
            self.body = nil
            self.route(head, body: body, context: context)
        }
    }

    /// A reader that stopped reading makes the channel unwritable (its HTTP/2 window or the
    /// socket is full): the stream waits, so memory stays bounded; it goes on once writable.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.stream?.resumeIfWaiting() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !self.streamEnded {
            self.stream?.cancel()
            self.finish(.cancelled)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Routing

    private func route(_ head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        if let required = self.configuration.apiKey, path.hasPrefix("/v1/") || path.contains("/runs") || path == "/threads" {
            guard head.headers.first(name: "authorization") == "Bearer \(required)" else {
                self.respond(context, status: .unauthorized, json: #"{"error":{"message":"missing or wrong API key","type":"invalid_request_error"}}"#)
                return
            }
        }
        switch (head.method, path) {
        case (.GET, "/health"):
            let delay = self.configuration.chunkDelay.nanoseconds / 1_000_000
            self.respond(context, status: .ok, json: #"{"status":"ok","chunk_count":\#(self.configuration.chunkCount),"chunk_delay_ms":\#(delay)}"#)
        case (.GET, "/stats"):
            self.respond(context, status: .ok, bytes: self.stats.json())
        case (.POST, "/stats/reset"):
            self.stats.reset()
            self.respond(context, status: .ok, json: #"{"reset":true}"#)
        case (.GET, "/v1/models"):
            self.respond(context, status: .ok, json: #"{"object":"list","data":[{"id":"mock-llm","object":"model","owned_by":"handoff"}]}"#)
        case (.POST, "/v1/chat/completions"):
            self.completion(head, body: body, context: context)
        case (.POST, "/threads"):
            self.respond(context, status: .ok, json: #"{"thread_id":"\#(UUID().uuidString.lowercased())","metadata":{}}"#)
        case (.POST, "/runs/stream"):
            self.startStream(head, kind: .langGraph(threadID: nil), model: "mock-graph", context: context)
        case (.POST, _) where path.hasPrefix("/threads/") && path.hasSuffix("/runs/stream"):
            let threadID = path.dropFirst("/threads/".count).dropLast("/runs/stream".count)
            self.startStream(head, kind: .langGraph(threadID: String(threadID)), model: "mock-graph", context: context)
        default:
            self.respond(context, status: .notFound, json: #"{"error":{"message":"no route for \#(head.method) \#(path)"}}"#)
        }
    }

    private func completion(_ head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        let request = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]
        guard let request, request["messages"] is [Any] else {
            self.respond(context, status: .badRequest, json: #"{"error":{"message":"messages is required","type":"invalid_request_error"}}"#)
            return
        }
        let model = request["model"] as? String ?? "mock-llm"
        guard request["stream"] as? Bool == true else {
            let pattern = TestPattern(header: head.headers.first(name: "x-test-pattern"))
            let text = (0..<self.configuration.chunkCount).map(pattern.chunk).joined()
            var buffer = context.channel.allocator.buffer(capacity: text.utf8.count + 256)
            buffer.writeString(#"{"id":"chatcmpl-mock","object":"chat.completion","model":"#)
            buffer.writeString(MockCompletionStream.jsonString(model))
            buffer.writeString(#","choices":[{"index":0,"message":{"role":"assistant","content":"#)
            buffer.writeString(MockCompletionStream.jsonString(text))
            buffer.writeString(#"},"finish_reason":"stop"}]}"#)
            self.respond(context, status: .ok, bytes: Array(buffer.readableBytesView))
            return
        }
        var echo: String?
        if head.headers.first(name: "x-test-pattern")?.contains("echo") == true, let messages = request["messages"],
            let data = try? JSONSerialization.data(withJSONObject: messages, options: [.sortedKeys, .withoutEscapingSlashes])
        {
            echo = String(decoding: data, as: UTF8.self)
        }
        self.startStream(head, kind: .openAI, model: model, context: context, echo: echo)
    }

    // MARK: Streaming

    private func startStream(_ head: HTTPRequestHead, kind: MockCompletionStream.Kind, model: String, context: ChannelHandlerContext, echo: String? = nil) {
        let pattern = TestPattern(header: head.headers.first(name: "x-test-pattern"))
        self.streamPattern = pattern.name
        self.streamEnded = false
        self.stats.requestStarted(pattern: pattern.name)
        let stream = MockCompletionStream(
            kind: kind,
            model: model,
            pattern: pattern,
            chunkCount: pattern.content == .echo ? 1 : self.configuration.chunkCount,
            echo: echo,
            chunkDelay: self.configuration.chunkDelay,
            context: context,
            keepAlive: head.isKeepAlive,
            stats: self.stats,
            onEnd: { [self] outcome in self.finish(outcome) }
        )
        self.stream = stream
        stream.start()
    }

    private func finish(_ outcome: MockStats.Outcome) {
        guard !self.streamEnded else { return }
        self.streamEnded = true
        self.stream = nil
        self.stats.streamEnded(pattern: self.streamPattern, outcome: outcome)
    }

    // MARK: Plain responses

    private func respond(_ context: ChannelHandlerContext, status: HTTPResponseStatus, json: String) {
        self.respond(context, status: status, bytes: Array(json.utf8) + [0x0A])
    }

    private func respond(_ context: ChannelHandlerContext, status: HTTPResponseStatus, bytes: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(bytes.count))
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
    }
}
