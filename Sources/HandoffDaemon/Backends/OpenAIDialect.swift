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

    init(pathPrefix: String, apiKey: String?, defaultModel: String) {
        self.pathPrefix = pathPrefix
        self.apiKey = apiKey
        self.defaultModel = defaultModel
    }

    func makeRequest(for request: HandoffRequest, allocator: ByteBufferAllocator) throws(HandoffRequestError) -> UpstreamRequest {
        let messages = try Self.messageList(for: request)
        // Written straight into the body, keys in sorted order.
        var body = allocator.buffer(capacity: 256)
        body.writeStaticString("{")
        if let maxTokens = request.maxTokens {
            body.writeStaticString("\"max_tokens\":")
            body.writeString(String(maxTokens))
            body.writeStaticString(",")
        }
        body.writeStaticString("\"messages\":")
        Self.write(messages, into: &body)
        body.writeStaticString(",\"model\":")
        body.writeJSONString(request.model ?? self.defaultModel)
        body.writeStaticString(",\"stream\":true,\"stream_options\":{\"include_usage\":true}")
        if let temperature = request.temperature {
            body.writeStaticString(",\"temperature\":")
            body.writeJSON(.number(temperature))
        }
        if let user = request.userID {
            body.writeStaticString(",\"user\":")
            body.writeJSONString(user)
        }
        body.writeStaticString("}")
        var headers: [(String, String)] = []
        if let apiKey { headers.append(("authorization", "Bearer \(apiKey)")) }
        if let pattern = request.testPattern { headers.append(("x-test-pattern", pattern)) }
        if let id = request.requestID { headers.append(("x-request-id", id)) }
        return UpstreamRequest(path: self.pathPrefix + "/chat/completions", headers: headers, body: body)
    }

    /// One message of the OpenAI `messages` array.
    struct Message {
        enum Content {
            case text(String)
            case parts([HandoffRequest.ContentPart])
        }

        let role: String
        let content: Content

        var json: JSONValue {
            switch self.content {
            case .text(let text): .object(["role": .string(self.role), "content": .string(text)])
            case .parts(let parts): .object(["role": .string(self.role), "content": .array(parts.map(OpenAIDialect.part))])
            }
        }
    }

    /// The OpenAI `messages` array: the handoff's own, or `system` + `prompt`.
    static func messages(for request: HandoffRequest) throws(HandoffRequestError) -> [JSONValue] {
        try self.messageList(for: request).map(\.json)
    }

    static func messageList(for request: HandoffRequest) throws(HandoffRequestError) -> [Message] {
        var messages: [Message] = []
        if let system = request.system { messages.append(Message(role: "system", content: .text(system))) }
        for item in request.messages ?? [] {
            switch item.content {
            case .text(let text):
                messages.append(Message(role: item.role, content: .text(text)))
            case .parts(let parts):
                messages.append(Message(role: item.role, content: .parts(parts)))
            }
        }
        let extra = request.imageURLs.map { HandoffRequest.ContentPart.imageURL($0) } + request.attachmentParts
        if let prompt = request.prompt {
            messages.append(Message(role: "user", content: extra.isEmpty ? .text(prompt) : .parts([.text(prompt)] + extra)))
        } else if !extra.isEmpty {
            messages.append(Message(role: "user", content: .parts(extra)))
        }
        guard !messages.isEmpty else {
            throw HandoffRequestError(reason: .invalidValue, field: "prompt", message: "a prompt or messages are required")
        }
        return messages
    }

    /// `messages` as a JSON array, the bytes ``ByteBuffer/writeJSON(_:)`` writes for
    /// ``messages(for:)``; a text message without building its object.
    static func write(_ messages: [Message], into body: inout ByteBuffer) {
        body.writeStaticString("[")
        for (index, message) in messages.enumerated() {
            if index > 0 { body.writeStaticString(",") }
            guard case .text(let text) = message.content else {
                body.writeJSON(message.json)
                continue
            }
            body.writeStaticString("{\"content\":")
            body.writeJSONString(text)
            body.writeStaticString(",\"role\":")
            body.writeJSONString(message.role)
            body.writeStaticString("}")
        }
        body.writeStaticString("]")
    }

    private static func part(_ part: HandoffRequest.ContentPart) -> JSONValue {
        switch part {
        case .text(let text): .object(["type": .string("text"), "text": .string(text)])
        case .imageURL(let url): .object(["type": .string("image_url"), "image_url": .object(["url": .string(url)])])
        }
    }

    mutating func interpret(_ event: SSEEvent) -> DialectOutput {
        if event.data == "[DONE]" {
            self.canFinish = true
            return .done
        }
        guard !event.data.isEmpty else { return .nothing }
        guard let chunk = OpenAIChunk.decode(event.data) else {
            return .failure(UpstreamError(.malformed, "event is not a completion chunk: \(event.data.prefix(120))"))
        }
        if let error = chunk.error {
            return .failure(UpstreamError(.upstreamReportedError, error.message ?? error.type ?? "error"))
        }
        if let usage = chunk.usage {
            self.summary.promptTokens = usage.promptTokens
            self.summary.completionTokens = usage.completionTokens
        }
        guard let choice = chunk.firstChoice else { return .nothing }
        if let reason = choice.finishReason { self.summary.finishReason = reason }
        guard let content = choice.content, !content.isEmpty else { return .nothing }
        return .content(content)
    }
}
