import Foundation
import NIOCore
import NIOHTTP1

/// One request as the mock sees it, from HTTP/1.1 or HTTP/2.
struct MockRequest {
    var method: String
    var uri: String
    var headers: HTTPHeaders
    var body: ByteBuffer
}

/// One request and its answer, whatever the protocol: the OpenAI- and LangGraph-compatible
/// routes, streams with timers, and fault injection. Loop-bound.
final class MockExchange {
    private let configuration: MockLLMConfiguration
    private let stats: MockStats
    private let writer: any MockResponseWriter
    private var stream: MockCompletionStream?
    private var streamPattern = "default"
    private var streamEnded = true

    static let maximumBodyBytes = 4 * 1024 * 1024

    init(configuration: MockLLMConfiguration, stats: MockStats, writer: any MockResponseWriter) {
        self.configuration = configuration
        self.stats = stats
        self.writer = writer
        stats.exchangeCreated()
    }

    deinit {
        self.stats.exchangeFreed()
    }

    /// The reader takes bytes again: a stream that waited goes on.
    func resumeIfWaiting() {
        self.stream?.resumeIfWaiting()
    }

    /// The client went away (or reset the stream).
    func cancel() {
        if !self.streamEnded {
            self.stream?.cancel()
            self.finish(.cancelled)
        }
    }

    // MARK: Routing

    func serve(_ head: MockRequest) {
        let body = head.body
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        if let required = self.configuration.apiKey, path.hasPrefix("/v1/") || path.contains("/runs") || path == "/threads" {
            guard head.headers.first(name: "authorization") == "Bearer \(required)" else {
                self.respond(status: 401, json: #"{"error":{"message":"missing or wrong API key","type":"invalid_request_error"}}"#)
                return
            }
        }
        switch (head.method, path) {
        case ("GET", "/health"):
            let delay = self.configuration.chunkDelay.nanoseconds / 1_000_000
            self.respond(status: 200, json: #"{"status":"ok","chunk_count":\#(self.configuration.chunkCount),"chunk_delay_ms":\#(delay)}"#)
        case ("GET", "/stats"):
            self.writer.respond(status: 200, json: self.stats.json())
        case ("POST", "/stats/reset"):
            self.stats.reset()
            self.respond(status: 200, json: #"{"reset":true}"#)
        case ("GET", "/v1/models"):
            self.respond(status: 200, json: #"{"object":"list","data":[{"id":"mock-llm","object":"model","owned_by":"handoff"}]}"#)
        case ("POST", "/v1/chat/completions"):
            self.completion(head, body: body)
        case ("POST", "/threads"):
            self.respond(status: 200, json: #"{"thread_id":"\#(UUID().uuidString.lowercased())","metadata":{}}"#)
        case ("POST", "/runs/stream"):
            self.startStream(head, kind: .langGraph(threadID: nil), model: "mock-graph")
        case ("POST", _) where path.hasPrefix("/threads/") && path.hasSuffix("/runs/stream"):
            let threadID = path.dropFirst("/threads/".count).dropLast("/runs/stream".count)
            self.startStream(head, kind: .langGraph(threadID: String(threadID)), model: "mock-graph")
        default:
            self.respond(status: 404, json: #"{"error":{"message":"no route for \#(head.method) \#(path)"}}"#)
        }
    }

    private func completion(_ head: MockRequest, body: ByteBuffer) {
        let request = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]
        guard let request, request["messages"] is [Any] else {
            self.respond(status: 400, json: #"{"error":{"message":"messages is required","type":"invalid_request_error"}}"#)
            return
        }
        let model = request["model"] as? String ?? "mock-llm"
        guard request["stream"] as? Bool == true else {
            let pattern = TestPattern(header: head.headers.first(name: "x-test-pattern"))
            let text = (0..<self.configuration.chunkCount).map(pattern.chunk).joined()
            var buffer = self.writer.allocator.buffer(capacity: text.utf8.count + 256)
            buffer.writeString(#"{"id":"chatcmpl-mock","object":"chat.completion","model":"#)
            buffer.writeString(MockCompletionStream.jsonString(model))
            buffer.writeString(#","choices":[{"index":0,"message":{"role":"assistant","content":"#)
            buffer.writeString(MockCompletionStream.jsonString(text))
            buffer.writeString(#"},"finish_reason":"stop"}]}"#)
            self.writer.respond(status: 200, json: Array(buffer.readableBytesView))
            return
        }
        var echo: String?
        if head.headers.first(name: "x-test-pattern")?.contains("echo") == true, let messages = request["messages"],
            let data = try? JSONSerialization.data(withJSONObject: messages, options: [.sortedKeys, .withoutEscapingSlashes])
        {
            echo = String(decoding: data, as: UTF8.self)
        }
        self.startStream(head, kind: .openAI, model: model, echo: echo)
    }

    // MARK: Streaming

    private func startStream(_ head: MockRequest, kind: MockCompletionStream.Kind, model: String, echo: String? = nil) {
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
            writer: self.writer,
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

    func respond(status: Int, json: String) {
        self.writer.respond(status: status, json: Array(json.utf8) + [0x0A])
    }
}
