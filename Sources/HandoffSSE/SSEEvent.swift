/// One event dispatched by `SSEParser`: what a browser's `EventSource` would deliver as a
/// `MessageEvent`.
public struct SSEEvent: Sendable, Equatable {
    /// The `event` field, or `nil` when the event had none (or an empty one): the spec's
    /// default type, "message". See `type`.
    public var event: String?
    /// The `data` lines joined with LF, without a trailing LF.
    public var data: String
    /// The last event ID at dispatch time: the most recent `id` field of the stream, which may
    /// have come with an earlier event. `nil` when it is the empty string (never set, or
    /// cleared by an empty `id` field), which the spec treats as no ID.
    public var id: String?
    /// The valid `retry` field (milliseconds) received with this event, since the previous
    /// blank line; `nil` if there was none. `SSEParser.reconnectionTime` keeps the stream's
    /// current value, including one sent in a block without data.
    public var retry: Int?

    /// Creates an event.
    public init(event: String? = nil, data: String, id: String? = nil, retry: Int? = nil) {
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry
    }

    /// The event type as `EventSource` dispatches it: `event`, or "message" when that is `nil`.
    public var type: String {
        self.event ?? "message"
    }
}
