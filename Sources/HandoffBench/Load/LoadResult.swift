/// What a load run measured; worker results merge into one.
public struct LoadResult: Sendable, Codable {
    /// Streams started.
    public var started = 0
    /// Streams with the status, every expected event and `[DONE]`.
    public var completed = 0
    /// Failed streams by kind (`timeout`, `missing_done`, …).
    public var failures: [String: Int] = [:]
    /// Most streams open at once (summed across workers by the coordinator).
    public var peakConcurrent = 0
    /// Response bytes received.
    public var bytes = 0
    /// Wall time of the run, in seconds.
    public var elapsedSeconds = 0.0
    /// Latencies: `connect`, `handoff`, `status`, `first_event`, `first_content`, `duration`.
    public var latencies: [String: LatencyHistogram] = [:]
    /// Retries after a full listen backlog (`EAGAIN` on connect).
    public var backlogRetries = 0

    public init() {}

    public var failed: Int { self.failures.values.reduce(0, +) }

    public static let latencyNames = ["connect", "handoff", "status", "first_event", "first_content", "duration"]

    mutating func record(_ name: String, nanoseconds: UInt64) {
        self.latencies[name, default: LatencyHistogram()].record(nanoseconds: nanoseconds)
    }

    /// Adds a worker's result (peak concurrency is summed by the coordinator from progress).
    public mutating func merge(_ other: LoadResult) {
        self.started += other.started
        self.completed += other.completed
        self.bytes += other.bytes
        self.backlogRetries += other.backlogRetries
        self.elapsedSeconds = max(self.elapsedSeconds, other.elapsedSeconds)
        for (kind, count) in other.failures { self.failures[kind, default: 0] += count }
        for (name, histogram) in other.latencies { self.latencies[name, default: LatencyHistogram()].merge(histogram) }
    }
}

/// A worker's live counters, sent once a second.
public struct LoadProgress: Sendable, Codable {
    public var elapsedSeconds: Double
    public var active: Int
    public var started: Int
    public var completed: Int
    public var failed: Int

    public init(elapsedSeconds: Double = 0, active: Int = 0, started: Int = 0, completed: Int = 0, failed: Int = 0) {
        self.elapsedSeconds = elapsedSeconds
        self.active = active
        self.started = started
        self.completed = completed
        self.failed = failed
    }
}
