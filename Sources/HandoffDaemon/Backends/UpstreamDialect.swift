import HandoffSSE
import NIOCore
import HandoffRequest

/// How one kind of upstream is spoken: the request it wants and the meaning of its events.
/// Pure apart from JSON: the I/O, timers and client writes belong to ``UpstreamSource``.
protocol UpstreamDialect {
    /// The request for this handoff.
    func makeRequest(for request: HandoffRequest, allocator: ByteBufferAllocator) throws(HandoffRequestError) -> UpstreamRequest
    /// What one upstream event means for the client.
    mutating func interpret(_ event: SSEEvent) -> DialectOutput
    /// Whether the body may end now and count as finished (OpenAI: only after `[DONE]`).
    var canFinish: Bool { get }
    /// Facts for the access log, once the stream ended.
    var summary: StreamSummary { get }
}

/// What the client gets for one upstream event.
enum DialectOutput: Equatable {
    /// Nothing (role-only deltas, empty content, metadata the dialect keeps).
    case nothing
    /// `data: {"content":"…"}`.
    case content(String)
    /// The event, re-encoded as it came (native pass-through).
    case passThrough(SSEEvent)
    /// The upstream said it is done; the body should end next.
    case done
    /// The stream failed midway (malformed event or an error the upstream reported).
    case failure(UpstreamError)
}

/// What the access log says about a stream's upstream side.
struct StreamSummary: Sendable, Equatable {
    var finishReason: String?
    var promptTokens: Int?
    var completionTokens: Int?
}
