import HandoffRedis
import NIOCore

/// Records one resumable stream's events in Redis, on the stream's loop.
///
/// Events of one loop tick leave together: one `XADD` each (entry id `0-N` for event N), then
/// one `PUBLISH` to wake followers, all pipelined in one write. The first batch also sets a
/// TTL covering the longest stream (so a crashed daemon's recording still expires); the final
/// event (`[DONE]` or the error) carries `end 1` and shortens the TTL to the resume TTL.
/// A failed command stops the recording for good (the stream goes on live): a recording with
/// a hole would make followers wait for events that never come.
final class StreamRecorder {
    private let services: RedisServices
    private let loop: EventLoopState
    let keys: StreamKeys
    private let liveTTLSeconds: Int
    private var pending: [(id: Int64, event: ByteBuffer, final: Bool)] = []
    private var scheduled = false
    private var expirySet = false
    private(set) var failed = false
    private(set) var finished = false

    init(services: RedisServices, loop: EventLoopState, keys: StreamKeys, liveTTL: Duration) {
        self.services = services
        self.loop = loop
        self.keys = keys
        self.liveTTLSeconds = Int(liveTTL.components.seconds) + 1
    }

    /// Claims the stream id: `true` when this stream is the first with it, `false` when the id
    /// is taken (recorded before, or running); fails when Redis does not answer.
    static func claim(services: RedisServices, loop: EventLoopState, keys: StreamKeys, owner: String, liveTTL: Duration) -> EventLoopFuture<Bool> {
        let seconds = Int(liveTTL.components.seconds) + 1
        return services.send(RESPCommand("SET", [.string(keys.meta), .string(owner), "NX", "EX", .string(String(seconds))]), loop: loop)
            .map { reply in !reply.isNull }
    }

    /// Whether events are still being recorded.
    var isRecording: Bool { !self.failed }

    /// Appends event `id` (its complete SSE bytes, `id:` line included). `final`: the stream's
    /// last event.
    func append(id: Int64, event: ByteBuffer, final: Bool) {
        guard !self.failed, !self.finished else { return }
        if final { self.finished = true }
        self.pending.append((id, event, final))
        guard !self.scheduled else { return }
        self.scheduled = true
        self.loop.eventLoop.assumeIsolatedUnsafeUnchecked().execute { self.sendPending() }
    }

    /// The stream ended before it began (its upstream refused): the id is released, so a
    /// resume answers 204 and the application may start it again.
    func abandon() {
        self.finished = true
        _ = self.services.send(RESPCommand("DEL", [.string(self.keys.meta), .string(self.keys.events)]), loop: self.loop)
    }

    private func sendPending() {
        self.scheduled = false
        guard !self.failed, !self.pending.isEmpty else { return }
        let batch = self.pending
        self.pending.removeAll(keepingCapacity: true)
        var replies: [EventLoopFuture<RESPValue>] = []
        replies.reserveCapacity(batch.count + 3)
        for entry in batch {
            var arguments: [RESPArgument] = [.string(self.keys.events), .string("0-\(entry.id)"), "e", .bytes(entry.event)]
            if entry.final { arguments += ["end", "1"] }
            replies.append(self.services.send(RESPCommand("XADD", arguments), loop: self.loop))
        }
        let ttl = self.services.settings.resumeTTL.components.seconds
        if batch.last?.final == true {
            replies.append(self.services.send(RESPCommand("EXPIRE", [.string(self.keys.events), .string(String(ttl))]), loop: self.loop))
            replies.append(self.services.send(RESPCommand("EXPIRE", [.string(self.keys.meta), .string(String(ttl))]), loop: self.loop))
        } else if !self.expirySet {
            self.expirySet = true
            replies.append(self.services.send(RESPCommand("EXPIRE", [.string(self.keys.events), .string(String(self.liveTTLSeconds))]), loop: self.loop))
        }
        replies.append(self.services.send(RESPCommand("PUBLISH", [.string(self.keys.notify), .string(String(batch.last!.id))]), loop: self.loop))
        for reply in replies {
            reply.assumeIsolated().whenFailure { _ in self.recordingFailed() }
        }
    }

    private func recordingFailed() {
        guard !self.failed else { return }
        self.failed = true
        self.pending.removeAll()
        self.services.metrics.recordingFailures.increment()
    }
}
