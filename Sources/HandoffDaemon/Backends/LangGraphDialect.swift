import HandoffSSE
import NIOCore
import HandoffRequest

/// LangGraph Platform runs: `POST {base}/threads/{thread_id}/runs/stream` (or `/runs/stream`
/// without a thread). Its native events are passed to the client unchanged; an `error` event
/// ends the stream with our error event, and a body that ends cleanly is a finished run.
struct LangGraphDialect: UpstreamDialect {
    let profile: LangGraphProfile

    private(set) var summary = StreamSummary()
    private(set) var canFinish = true

    func makeRequest(for request: HandoffRequest, allocator: ByteBufferAllocator) throws(HandoffRequestError) -> UpstreamRequest {
        guard let assistant = request.assistantID ?? self.profile.assistantID else {
            throw HandoffRequestError(reason: .invalidValue, field: "assistant_id", message: "required: the profile names no default assistant")
        }
        var body: [String: JSONValue] = [
            "assistant_id": .string(assistant),
            "stream_mode": .array((request.streamMode ?? self.profile.streamMode).map(JSONValue.string)),
        ]
        if let input = request.langGraphInput {
            body["input"] = input
        } else if request.prompt != nil || request.messages != nil {
            body["input"] = .object(["messages": .array(try OpenAIDialect.messages(for: request))])
        } else {
            throw HandoffRequestError(reason: .invalidValue, field: "langgraph_input", message: "a prompt, messages or langgraph_input is required")
        }
        let path: String
        if let thread = request.threadID {
            guard thread.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw HandoffRequestError(reason: .invalidValue, field: "thread_id", message: "may hold only letters, digits, - and _")
            }
            path = self.profile.upstream.endpoint.pathPrefix + "/threads/\(thread)/runs/stream"
            if self.profile.createThreads { body["if_not_exists"] = .string("create") }
        } else {
            path = self.profile.upstream.endpoint.pathPrefix + "/runs/stream"
        }
        var data = allocator.buffer(capacity: 256)
        data.writeJSON(.object(body))
        var headers: [(String, String)] = []
        if let key = self.profile.apiKey { headers.append(("x-api-key", key)) }
        if let pattern = request.testPattern { headers.append(("x-test-pattern", pattern)) }
        if let id = request.requestID { headers.append(("x-request-id", id)) }
        return UpstreamRequest(path: path, headers: headers, body: data)
    }

    mutating func interpret(_ event: SSEEvent) -> DialectOutput {
        if event.event == "error" {
            return .failure(UpstreamError(.upstreamReportedError, event.data.prefix(200).description))
        }
        return .passThrough(event)
    }
}

/// A named LangGraph deployment from configuration.
public struct LangGraphProfile: Sendable {
    /// Where the deployment is and how to connect.
    public var upstream: UpstreamSettings
    /// Sent as `x-api-key`.
    public var apiKey: String?
    /// Default assistant (graph id).
    public var assistantID: String?
    /// Default stream modes. Default `["values"]`.
    public var streamMode: [String]
    /// Create a missing thread (`if_not_exists: create`). Default `true`.
    public var createThreads: Bool

    public init(upstream: UpstreamSettings, apiKey: String? = nil, assistantID: String? = nil, streamMode: [String] = ["values"], createThreads: Bool = true) {
        self.upstream = upstream
        self.apiKey = apiKey
        self.assistantID = assistantID
        self.streamMode = streamMode
        self.createThreads = createThreads
    }
}
