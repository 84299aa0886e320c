public import CoreMetrics
import HandoffWire

/// Every metric handoffd records, created once. Labels are the constants below.
///
/// Libraries only record; the executable chooses the backend (Prometheus) and tests pass
/// their own factory.
public final class DaemonMetrics: Sendable {
    /// Metric names, the one place they are spelled.
    public enum Name {
        public static let handoffs = "handoffd_handoffs_total"
        public static let handoffErrors = "handoffd_handoff_errors_total"
        public static let rejections = "handoffd_rejections_total"
        public static let activeStreams = "handoffd_active_streams"
        public static let maxStreams = "handoffd_max_streams"
        public static let draining = "handoffd_draining"
        public static let streams = "handoffd_streams_total"
        public static let bytesSent = "handoffd_bytes_sent_total"
        public static let eventsSent = "handoffd_events_sent_total"
        public static let clientDisconnects = "handoffd_client_disconnects_total"
        public static let streamDuration = "handoffd_stream_duration_seconds"
        public static let timeToFirstByte = "handoffd_ttfb_seconds"
        public static let upstreamResponses = "handoffd_upstream_responses_total"
        public static let upstreamCancellations = "handoffd_upstream_cancellations_total"
    }

    /// Handoff records received with a client we could serve or answer.
    let handoffs: Counter
    /// Handoffs refused, by reason (wire problems, bad JSON, capacity).
    private let handoffErrors: [String: Counter]
    /// Error responses sent to clients, by status code.
    private let rejections: [Int: Counter]
    /// Streams currently running.
    let activeStreams: Meter
    /// The most streams this process takes (`--max-connections`, or what its descriptors allow).
    let maxStreams: Meter
    /// 1 once graceful shutdown (or a reload's hand-over) began: the process drains.
    let draining: Meter
    /// Finished connections, by outcome.
    private let streams: [String: Counter]
    let bytesSent: Counter
    let eventsSent: Counter
    let clientDisconnects: Counter
    let streamDuration: Timer
    let timeToFirstByte: Timer
    /// Upstream requests cancelled because the client left or the stream was ended.
    let upstreamCancellations: Counter
    private let upstreamResponses: [String: Counter]
    /// Resumable streams, followers, channels and Redis (only when Redis is configured).
    let redis: RedisMetrics?
    /// Completion callbacks (only when they are configured).
    let completion: CompletionMetrics?

    /// Reasons a handoff is counted as an error: the wire's and the request's.
    static let errorReasons: [String] =
        HandoffRejection.allCases.map(\.rawValue) + [
            "invalid_json", "wrong_type", "invalid_value", "field_too_large", "unknown_backend", "over_capacity",
            "launch_failed", "backend_not_configured", "profile_required", "unknown_profile",
            "redis_not_configured", "stream_id_taken", "channel_required",
        ]

    static let rejectionStatuses = [204, 400, 409, 413, 429, 500, 501, 502, 503, 504]

    /// `redis`, `completion`: export those families too (only what is configured is exported,
    /// so a dashboard never shows a Redis that is not there as down).
    public init(factory: any MetricsFactory = MetricsSystem.factory, redis: Bool = false, completion: Bool = false) {
        self.handoffs = Counter(label: Name.handoffs, factory: factory)
        self.handoffErrors = Dictionary(
            uniqueKeysWithValues: Self.errorReasons.map { ($0, Counter(label: Name.handoffErrors, dimensions: [("reason", $0)], factory: factory)) }
        )
        self.rejections = Dictionary(
            uniqueKeysWithValues: Self.rejectionStatuses.map {
                ($0, Counter(label: Name.rejections, dimensions: [("status", String($0))], factory: factory))
            }
        )
        self.activeStreams = Meter(label: Name.activeStreams, factory: factory)
        self.maxStreams = Meter(label: Name.maxStreams, factory: factory)
        self.draining = Meter(label: Name.draining, factory: factory)
        self.streams = Dictionary(
            uniqueKeysWithValues: StreamStateMachine.Outcome.allCases.map {
                ($0.rawValue, Counter(label: Name.streams, dimensions: [("outcome", $0.rawValue)], factory: factory))
            }
        )
        self.bytesSent = Counter(label: Name.bytesSent, factory: factory)
        self.eventsSent = Counter(label: Name.eventsSent, factory: factory)
        self.clientDisconnects = Counter(label: Name.clientDisconnects, factory: factory)
        self.streamDuration = Timer(label: Name.streamDuration, preferredDisplayUnit: .seconds, factory: factory)
        self.timeToFirstByte = Timer(label: Name.timeToFirstByte, preferredDisplayUnit: .seconds, factory: factory)
        self.upstreamCancellations = Counter(label: Name.upstreamCancellations, factory: factory)
        self.redis = redis ? RedisMetrics(factory: factory) : nil
        self.completion = completion ? CompletionMetrics(factory: factory) : nil
        self.upstreamResponses = Dictionary(
            uniqueKeysWithValues: ["2xx", "429", "4xx", "5xx", "other", "failed"].map {
                ($0, Counter(label: Name.upstreamResponses, dimensions: [("status", $0)], factory: factory))
            }
        )
    }

    /// Counts a refused handoff.
    func handoffError(_ reason: String) {
        self.handoffErrors[reason]?.increment()
    }

    /// Counts an error response sent to a client.
    func rejection(status: Int) {
        self.rejections[status]?.increment()
    }

    /// Counts an upstream answer by status class, or a failure (`nil`).
    func upstreamResponse(status: Int?) {
        let key: String
        switch status {
        case .none: key = "failed"
        case .some(200..<300): key = "2xx"
        case .some(429): key = "429"
        case .some(400..<500): key = "4xx"
        case .some(500..<600): key = "5xx"
        default: key = "other"
        }
        self.upstreamResponses[key]?.increment()
    }

    /// Counts a finished connection.
    func stream(outcome: StreamStateMachine.Outcome) {
        self.streams[outcome.rawValue]?.increment()
    }
}
