import CoreMetrics

/// The metrics of resumable streams, followers, channels and the Redis under them.
final class RedisMetrics: Sendable {
    enum Name {
        static let up = "handoffd_redis_up"
        static let errors = "handoffd_redis_errors_total"
        static let roundTrip = "handoffd_redis_round_trip_seconds"
        static let recordedStreams = "handoffd_recorded_streams_total"
        static let recordingFailures = "handoffd_recording_failures_total"
        static let resumes = "handoffd_resumes_total"
        static let followers = "handoffd_followers"
        static let replayedEvents = "handoffd_replayed_events_total"
        static let subscriptions = "handoffd_channel_subscriptions"
        static let channelClients = "handoffd_channel_clients"
        static let channelMessages = "handoffd_channel_messages_total"

        static let all = [up, errors, roundTrip, recordedStreams, recordingFailures, resumes, followers, replayedEvents, subscriptions, channelClients, channelMessages]
    }

    /// 1 while Redis answers, 0 during an outage.
    let up: Meter
    /// Commands that failed (unreachable, timed out, refused).
    let errors: Counter
    /// Time from sending a command to its reply.
    let roundTrip: Timer
    /// Resumable streams whose recording started.
    let recordedStreams: Counter
    /// Resumable streams that went on live without (or with only part of) their recording.
    let recordingFailures: Counter
    /// Resume handoffs, by result: `followed`, `unknown` (204), `unavailable` (503).
    private let resumes: [String: Counter]
    /// Clients following a recorded stream now.
    let followers: Meter
    /// Recorded events sent to followers.
    let replayedEvents: Counter
    /// Channels this process is subscribed to.
    let subscriptions: Meter
    /// Clients of the channel backend now.
    let channelClients: Meter
    /// Channel messages handed to clients.
    let channelMessages: Counter

    init(factory: any MetricsFactory) {
        self.up = Meter(label: Name.up, factory: factory)
        self.errors = Counter(label: Name.errors, factory: factory)
        self.roundTrip = Timer(label: Name.roundTrip, preferredDisplayUnit: .seconds, factory: factory)
        self.recordedStreams = Counter(label: Name.recordedStreams, factory: factory)
        self.recordingFailures = Counter(label: Name.recordingFailures, factory: factory)
        self.resumes = Dictionary(uniqueKeysWithValues: ["followed", "unknown", "unavailable"].map {
            ($0, Counter(label: Name.resumes, dimensions: [("result", $0)], factory: factory))
        })
        self.followers = Meter(label: Name.followers, factory: factory)
        self.replayedEvents = Counter(label: Name.replayedEvents, factory: factory)
        self.subscriptions = Meter(label: Name.subscriptions, factory: factory)
        self.channelClients = Meter(label: Name.channelClients, factory: factory)
        self.channelMessages = Counter(label: Name.channelMessages, factory: factory)
    }

    func resume(_ result: String) {
        self.resumes[result]?.increment()
    }
}
