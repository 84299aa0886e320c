import Atomics
import HandoffRedis
import NIOCore

/// Records one resumable stream's events in Redis, on the stream's loop.
///
/// Each event becomes an `XADD` (entry id `0-N` for event N, its exact SSE bytes), encoded
/// at once into its loop's ``RecordingBatch``, which sends the commands of every stream of
/// one loop tick together; after a stream's events of that tick comes one `PUBLISH` to wake
/// its followers — while it has any. A `PUBLISH` answers how many subscribers got it; while
/// that is 0, a stream publishes at most once per ``unfollowedPublishInterval`` (and always
/// its last event), and a follower that subscribed in between polls until that interval
/// has surely passed (``FollowSource``), so nobody waits on a wake-up that was skipped.
/// The first batch also sets a TTL covering the longest stream (so a crashed
/// daemon's recording still expires); the final event (`[DONE]` or the error) carries
/// `end 1` and shortens the TTL to the resume TTL. A failed batch stops the recording of its
/// streams for good (they go on live): a recording with a hole would make followers wait for
/// events that never come.
final class StreamRecorder {
    private let batch: RecordingBatch
    private let services: RedisServices
    private let loop: EventLoopState
    let keys: StreamKeys
    private let liveTTLSeconds: Int64
    /// `XADD <events>` and `PUBLISH <notify>`, encoded once.
    private let xaddPrefix: ByteBuffer
    private let finalXaddPrefix: ByteBuffer
    private let publishPrefix: ByteBuffer
    /// The last event id added in the current tick's batch.
    private var lastID: Int64 = 0
    /// Waiting in the batch for its `PUBLISH`.
    private var inBatch = false
    /// The last `PUBLISH` reached a subscriber (assumed at first).
    private var followed = true
    private var lastPublish = NIODeadline.uptimeNanoseconds(0)

    /// How often a stream nobody follows still publishes a wake-up.
    static let unfollowedPublishInterval = TimeAmount.seconds(1)
    private var expirySet = false
    private(set) var failed = false
    private(set) var finished = false

    init(services: RedisServices, loop: EventLoopState, keys: StreamKeys, liveTTL: Duration) {
        self.batch = services.recordingBatch(for: loop)
        self.services = services
        self.loop = loop
        self.keys = keys
        self.liveTTLSeconds = liveTTL.components.seconds + 1
        self.xaddPrefix = RESPPipeline.prefix("XADD", arguments: 4, first: keys.events)
        self.finalXaddPrefix = RESPPipeline.prefix("XADD", arguments: 6, first: keys.events)
        self.publishPrefix = RESPPipeline.prefix("PUBLISH", arguments: 2, first: keys.notify)
    }

    /// Claims the stream id: `true` when this stream is the first with it, `false` when the id
    /// is taken (recorded before, or running); fails when Redis does not answer.
    static func claim(services: RedisServices, loop: EventLoopState, keys: StreamKeys, owner: String, liveTTL: Duration) -> EventLoopFuture<Bool> {
        var pipeline = RESPPipeline(capacity: 64 + keys.meta.utf8.count + owner.utf8.count)
        pipeline.command("SET", arguments: 5)
        pipeline.argument(keys.meta)
        pipeline.argument(owner)
        pipeline.argument("NX")
        pipeline.argument("EX")
        pipeline.argument(liveTTL.components.seconds + 1)
        pipeline.keepReply()
        return services.send(pipeline, loop: loop).map { replies in replies.first?.isNull == false }
    }

    /// A claim's value: the request id (for a person reading Redis), then this process's
    /// random token and a counter, so a release only ever removes its own claim.
    static func ownerToken(requestID: String?) -> String {
        "\(requestID ?? "-")#\(Self.processToken)-\(Self.claims.wrappingIncrementThenLoad(ordering: .relaxed))"
    }

    private static let processToken: String = {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next() as UInt64, radix: 16)
    }()
    private static let claims = ManagedAtomic<UInt64>(0)

    /// Removes the claim if it is still `owner`'s (compare and delete, in one script).
    static func release(_ keys: StreamKeys, owner: String, services: RedisServices, loop: EventLoopState) {
        let script = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
        _ = services.send(RESPCommand("EVAL", [.string(script), "1", .string(keys.meta), .string(owner)]), loop: loop, timed: false)
    }

    /// Whether events are still being recorded.
    var isRecording: Bool { !self.failed }

    /// Appends event `id` (its complete SSE bytes, `id:` line included). `final`: the stream's
    /// last event.
    func append(id: Int64, event: ByteBuffer, final: Bool) {
        guard !self.failed, !self.finished else { return }
        if final { self.finished = true }
        self.lastID = id
        let joined = !self.inBatch
        self.inBatch = true
        self.batch.add(self, joined: joined) { pipeline in
            pipeline.command(prefix: final ? self.finalXaddPrefix : self.xaddPrefix, name: "XADD")
            pipeline.argument("0-", id)
            pipeline.raw("$1\r\ne\r\n")
            pipeline.argument(event)
            if final { pipeline.raw("$3\r\nend\r\n$1\r\n1\r\n") }
        }
    }

    /// The commands that close this stream's part of a batch: the wake-up, and the TTLs.
    func closeBatch(into pipeline: inout RESPPipeline) {
        self.inBatch = false
        if self.finished {
            let ttl = self.services.settings.resumeTTL.components.seconds
            pipeline.command("EXPIRE", arguments: 2)
            pipeline.argument(self.keys.events)
            pipeline.argument(ttl)
            pipeline.command("EXPIRE", arguments: 2)
            pipeline.argument(self.keys.meta)
            pipeline.argument(ttl)
        } else if !self.expirySet {
            self.expirySet = true
            pipeline.command("EXPIRE", arguments: 2)
            pipeline.argument(self.keys.events)
            pipeline.argument(self.liveTTLSeconds)
        }
    }

    /// After every stream's commands of the batch: the wake-up for followers, when one is due
    /// (its reply, kept, says whether anyone listens). True when it added one.
    func publishIfDue(now: NIODeadline, into pipeline: inout RESPPipeline) -> Bool {
        guard self.followed || self.finished || now >= self.lastPublish + Self.unfollowedPublishInterval else { return false }
        self.lastPublish = now
        pipeline.command(prefix: self.publishPrefix, name: "PUBLISH")
        pipeline.argument(self.lastID)
        pipeline.keepReply()
        return true
    }

    /// How many subscribers the last wake-up reached.
    func published(to receivers: Int64) {
        self.followed = receivers > 0
    }

    /// The stream ended before it began (its upstream refused): the id is released, so a
    /// resume answers 204 and the application may start it again.
    func abandon() {
        self.finished = true
        _ = self.services.send(RESPCommand("DEL", [.string(self.keys.meta), .string(self.keys.events)]), loop: self.loop)
    }

    func recordingFailed() {
        guard !self.failed else { return }
        self.failed = true
        self.services.metrics.recordingFailures.increment()
    }
}

/// The recording commands of every stream on one loop during ``window``, sent as one
/// pipeline (one write, one future, one read of the replies). Followers see an event at most
/// a window later; the client itself never waits for the recording.
// @unchecked Sendable: used only on its loop.
final class RecordingBatch: @unchecked Sendable {
    /// Set once by the services right after they are built, before any loop uses the batch.
    weak var services: RedisServices?
    private let loop: EventLoopState
    private var pipeline = RESPPipeline()
    private var recorders: [StreamRecorder] = []

    private var scheduled = false

    init(loop: EventLoopState) {
        self.loop = loop
    }

    /// Adds commands for `recorder`; `joined`: its first in this batch.
    func add(_ recorder: StreamRecorder, joined: Bool, _ encode: (inout RESPPipeline) -> Void) {
        encode(&self.pipeline)
        if joined { self.recorders.append(recorder) }
        guard !self.scheduled else { return }
        self.scheduled = true
        self.loop.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: Self.window) { self.send() }
    }

    /// How long commands gather before they leave: a round trip to Redis costs syscalls and
    /// wake-ups on both sides, so fewer, fuller batches cost less per event.
    static let window = TimeAmount.milliseconds(5)

    /// Sends what has gathered now, without waiting for the window (at shutdown).
    func flushNow() {
        if self.scheduled { self.send() }
    }

    private func send() {
        guard self.scheduled else { return }
        self.scheduled = false
        let recorders = self.recorders
        self.recorders = []
        for recorder in recorders { recorder.closeBatch(into: &self.pipeline) }
        // The wake-ups go last, so a follower woken by one finds every event of the batch.
        let now = NIODeadline.now()
        let publishers = recorders.filter { $0.publishIfDue(now: now, into: &self.pipeline) }
        let pipeline = self.pipeline
        self.pipeline = RESPPipeline(capacity: max(1024, pipeline.bytes.readableBytes))
        guard let services = self.services else { return }
        services.send(pipeline, loop: self.loop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let receivers):
                for (recorder, count) in zip(publishers, receivers) { recorder.published(to: count.integer ?? 0) }
            case .failure:
                for recorder in recorders { recorder.recordingFailed() }
            }
        }
    }
}
