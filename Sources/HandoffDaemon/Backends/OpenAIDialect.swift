import Foundation
import HandoffSSE
import NIOCore
import HandoffRequest

/// OpenAI-compatible chat completions: `POST {base}/chat/completions` with `stream: true`;
/// events are `chat.completion.chunk` JSON, and `data: [DONE]` ends a finished stream.
struct OpenAIDialect: UpstreamDialect {
    /// Path prefix of the endpoint, e.g. `/v1`.
    let pathPrefix: String
    /// `Authorization: Bearer …`, from configuration only.
    let apiKey: String?
    /// Model when the handoff names none.
    let defaultModel: String

    private(set) var summary = StreamSummary()
    private(set) var canFinish = false
    private let decoder = JSONDecoder()

    init(pathPrefix: String, apiKey: String?, defaultModel: String) {
        self.pathPrefix = pathPrefix
        self.apiKey = apiKey
        self.defaultModel = defaultModel
    }

    func makeRequest(for request: HandoffRequest, allocator: ByteBufferAllocator) throws(HandoffRequestError) -> UpstreamRequest {
        var body: [String: Any] = [
            "model": request.model ?? self.defaultModel,
            "messages": try Self.messages(for: request),
            "stream": true,
            "stream_options": ["include_usage": true],
        ]
        if let maxTokens = request.maxTokens { body["max_tokens"] = maxTokens }
        if let temperature = request.temperature { body["temperature"] = temperature }
        if let user = request.userID { body["user"] = user }
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        var headers: [(String, String)] = []
        if let apiKey { headers.append(("authorization", "Bearer \(apiKey)")) }
        if let pattern = request.testPattern { headers.append(("x-test-pattern", pattern)) }
        if let id = request.requestID { headers.append(("x-request-id", id)) }
        return UpstreamRequest(path: self.pathPrefix + "/chat/completions", headers: headers, body: allocator.buffer(bytes: data))
    }

    /// The OpenAI `messages` array: the handoff's own, or `system` + `prompt`.
    static func messages(for request: HandoffRequest) throws(HandoffRequestError) -> [[String: Any]] {
        var messages: [[String: Any]] = []
        if let system = request.system { messages.append(["role": "system", "content": system]) }
        for message in request.messages ?? [] {
            switch message.content {
            case .text(let text):
                messages.append(["role": message.role, "content": text])
            case .parts(let parts):
                messages.append(["role": message.role, "content": parts.map(Self.part)])
            }
        }
        let extra = request.imageURLs.map { HandoffRequest.ContentPart.imageURL($0) } + request.attachmentParts
        if let prompt = request.prompt {
            messages.append(["role": "user", "content": extra.isEmpty ? prompt as Any : ([.text(prompt)] + extra).map(Self.part)])
        } else if !extra.isEmpty {
            messages.append(["role": "user", "content": extra.map(Self.part)])
        }
        guard !messages.isEmpty else {
            throw HandoffRequestError(reason: .invalidValue, field: "prompt", message: "a prompt or messages are required")
        }
        return messages
    }

    private static func part(_ part: HandoffRequest.ContentPart) -> [String: Any] {
        switch part {
        case .text(let text): ["type": "text", "text": text]
        case .imageURL(let url): ["type": "image_url", "image_url": ["url": url]]
        }
    }

    mutating func interpret(_ event: SSEEvent) -> DialectOutput {
        if event.data == "[DONE]" {
            self.canFinish = true
            return .done
        }
        guard !event.data.isEmpty else { return .nothing }
        guard let chunk = try? self.decoder.decode(Chunk.self, from: Data(event.data.utf8)) else {
            return .failure(UpstreamError(.malformed, "event is not a completion chunk: \(event.data.prefix(120))"))
        }
        if let error = chunk.error {
            return .failure(UpstreamError(.upstreamReportedError, error.message ?? error.type ?? "error"))
        }
        if let usage = chunk.usage {
            self.summary.promptTokens = usage.prompt_tokens
            self.summary.completionTokens = usage.completion_tokens
        }
        guard let choice = chunk.choices?.first else { return .nothing }
        if let reason = choice.finish_reason { self.summary.finishReason = reason }
        guard let content = choice.delta?.content, !content.isEmpty else { return .nothing }
        return .content(content)
    }

    /// The part of a `chat.completion.chunk` we read.
    private struct Chunk: Decodable {
        struct Choice: Decodable {
            struct Delta: Decodable { var content: String? }
            var delta: Delta?
            var finish_reason: String?
        }
        struct Usage: Decodable {
            var prompt_tokens: Int?
            var completion_tokens: Int?
        }
        struct ErrorBody: Decodable {
            var message: String?
            var type: String?
        }
        var choices: [Choice]?
        var usage: Usage?
        var error: ErrorBody?
    }
}
