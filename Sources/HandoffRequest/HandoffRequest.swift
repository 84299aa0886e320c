/// What the application asked for, decoded strictly from the `X-Handoff-Data` JSON.
///
/// Unknown fields are ignored; known fields with the wrong type or over their limit make the
/// whole handoff a `400` (see ``HandoffRequest/decode(_:)``).
public struct HandoffRequest: Sendable, Equatable {
    /// The user's prompt.
    public var prompt: String?
    /// A chat history, as OpenAI messages.
    public var messages: [ChatMessage]?
    /// A system prompt.
    public var system: String?
    /// The model to ask for.
    public var model: String?
    /// Upper bound on generated tokens.
    public var maxTokens: Int?
    /// Sampling temperature, 0–2.
    public var temperature: Double?
    /// The application's user id (a number or a string).
    public var userID: String?
    /// The application's request id, for logs.
    public var requestID: String?
    /// Which backend to use; the configured default when `nil`.
    public var backend: String?
    /// Forwarded upstream as `X-Test-Pattern` (and understood by the built-in mock).
    public var testPattern: String?
    /// Extra response headers, filtered and in a deterministic order.
    public var responseHeaders: [ResponseHeader]
    /// LangGraph: the named profile from configuration (never a URL or key from the handoff).
    public var profile: String?
    /// LangGraph: the thread to run on (created if missing when the profile allows it).
    public var threadID: String?
    /// LangGraph: the assistant (graph) to run; the profile's default when `nil`.
    public var assistantID: String?
    /// LangGraph: stream modes; the profile's default when `nil`.
    public var streamMode: [String]?
    /// LangGraph: the run input, forwarded unchanged; `{"messages":[…]}` from the prompt when `nil`.
    public var langGraphInput: JSONValue?
    /// Inline images (validated while decoding), as `data:` URLs for the last user message.
    public var imageURLs: [String] = []
    /// Files under the data directory, read (and deleted) before the upstream request.
    public var attachments: [AttachmentReference] = []
    /// The attachments once read, as content parts (filled in by the daemon off the event loop).
    public var attachmentParts: [ContentPart] = []
    /// Names the stream for recording and resuming: `[A-Za-z0-9_.:-]{1,128}`.
    public var streamID: String?
    /// Record the stream (needs ``streamID`` and Redis): every event gets an `id:`, and the
    /// stream goes on when the client leaves.
    public var resumable = false
    /// Follow the recorded stream ``streamID`` from after ``lastEventID`` instead of starting one.
    public var resume = false
    /// The last event id the client saw (the browser's `Last-Event-ID`); 0 replays from the start.
    public var lastEventID: Int64 = 0
    /// The pub/sub channel to stream (the `channel` backend).
    public var channel: String?
    /// Post the finished stream to the configured completion URL; `false` opts out.
    public var completion = true

    public init(
        prompt: String? = nil,
        messages: [ChatMessage]? = nil,
        system: String? = nil,
        model: String? = nil,
        maxTokens: Int? = nil,
        temperature: Double? = nil,
        userID: String? = nil,
        requestID: String? = nil,
        backend: String? = nil,
        testPattern: String? = nil,
        responseHeaders: [ResponseHeader] = []
    ) {
        self.prompt = prompt
        self.messages = messages
        self.system = system
        self.model = model
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.userID = userID
        self.requestID = requestID
        self.backend = backend
        self.testPattern = testPattern
        self.responseHeaders = responseHeaders
    }

    /// Fields that would point the daemon at another host or credential; a handoff carrying
    /// one is refused, because a per-request URL would send the configured key anywhere.
    public static let refusedFields: Set<String> = [
        "url", "base_url", "api_key", "api_base", "endpoint", "langgraph_url", "langgraph_api_key",
        "openai_base_url", "openai_api_key", "headers", "upstream",
    ]

    /// Whether `id` is a usable `stream_id`: 1 to 128 bytes, each one ``isStreamIDByte(_:)``.
    public static func isValidStreamID(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && id.utf8.allSatisfy(Self.isStreamIDByte)
    }

    /// Whether `byte` may appear in a `stream_id` (it becomes part of Redis keys and logs).
    public static func isStreamIDByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }

    /// One extra response header, already validated.
    public struct ResponseHeader: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// One chat message.
    public struct ChatMessage: Sendable, Equatable {
        /// One of ``roles``.
        public var role: String
        /// Plain text, or OpenAI content parts.
        public var content: Content

        public init(role: String, content: Content) {
            self.role = role
            self.content = content
        }

        /// The roles a handoff may give a message.
        public static let roles: Set<String> = ["system", "user", "assistant", "tool", "developer"]

        /// A message's content.
        public enum Content: Sendable, Equatable {
            case text(String)
            case parts([ContentPart])
        }
    }

    /// One OpenAI content part.
    public enum ContentPart: Sendable, Equatable {
        case text(String)
        case imageURL(String)
    }
}

/// Size limits applied while decoding a handoff.
public struct HandoffRequestLimits: Sendable {
    /// Longest `model`, `backend`, `user_id`, `request_id`, `test_pattern`, in bytes. Default 256.
    public var maxIdentifierBytes = 256
    /// Most chat messages. Default 1000.
    public var maxMessages = 1000
    /// Most content parts in one message. Default 64.
    public var maxContentParts = 64
    /// Most extra response headers. Default 32.
    public var maxResponseHeaders = 32
    /// Longest response header name, in bytes. Default 128.
    public var maxHeaderNameBytes = 128
    /// Longest response header value, in bytes. Default 4096.
    public var maxHeaderValueBytes = 4096
    /// Largest `max_tokens`. Default 1 000 000.
    public var maxTokens = 1_000_000
    /// Images and attachments.
    public var attachments = AttachmentLimits()

    public init() {}
}
