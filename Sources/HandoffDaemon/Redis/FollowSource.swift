import HandoffRedis
import NIOCore

/// Follows a recorded stream for a resume handoff: replays the events after the client's
/// last event id, then live ones as they are recorded, exactly once and in order, ending with
/// the recording's own last event (`[DONE]` or the error).
///
/// It belongs to its stream's ``FollowGroup`` on this loop, which wakes on the stream's
/// notify channel and offers every member what was recorded since. A member catches up on
/// its own (the replay, or after a pause) until it is level with the group: at the
/// subscription's confirmation, which closes the window between replay and live, and
/// whenever an offer starts past its position. Event ids are consecutive, so a hole in the
/// recording is detected, never papered over.
final class FollowSource: StreamSource, TimerWheelTarget {
    private unowned let session: StreamSession
    private let loop: EventLoopState
    private let services: RedisServices
    private let keys: StreamKeys
    private let timeouts: DaemonConfiguration.Timeouts
    /// The last event id sent to the client.
    private var position: Int64
    private var group: FollowGroup?
    private var fetching = false
    private var fetchAgain = false
    private var paused = false
    private var finished = false
    private var responded = false
    private let startedAt = NIODeadline.now()
    private var lastEvent = NIODeadline.now()
    private var lastClientWrite = NIODeadline.now()
    var wheelTimer = WheelTimer()


    init(session: StreamSession, loop: EventLoopState, services: RedisServices, keys: StreamKeys, after lastEventID: Int64, timeouts: DaemonConfiguration.Timeouts) {
        self.session = session
        self.loop = loop
        self.services = services
        self.keys = keys
        self.position = lastEventID
        self.timeouts = timeouts
    }

    // MARK: StreamSource

    func start() {
        // The claim says the stream exists; its last entry says whether the client has
        // already seen the end (an EventSource reconnecting after [DONE]).
        let exists = self.services.send(RESPCommand("EXISTS", [.string(self.keys.meta)]), loop: self.loop)
        let last = self.services.send(RESPCommand("XREVRANGE", [.string(self.keys.events), "+", "-", "COUNT", "1"]), loop: self.loop, timed: false)
        exists.and(last).assumeIsolated().whenComplete { result in
            guard !self.finished else { return }
            switch result {
            case .success(let (claim, lastEntry)) where claim.integer == 1:
                if let entry = lastEntry.array?.first.flatMap(RecordedEvent.init), entry.isFinal, entry.id <= self.position {
                    self.services.metrics.resume("unknown")
                    self.failBeforeHead(ErrorResponse(status: .noContent, error: "stream_ended", message: "the stream ended at or before this event id"))
                    return
                }
                self.services.metrics.resume("followed")
                self.responded = true
                self.session.sourceResponded(flush: true)
                // Writing the head can end the session (the client is gone): then nothing to follow.
                guard !self.finished else { return }
                self.services.metrics.followers.increment()
                self.group = self.services.follow(self.keys, self, loop: self.loop)
                // The client has everything up to its last event id: the group need never read
                // before it (a new group would otherwise read the whole recording once).
                self.group?.caughtUp(to: self.position)
                self.armTimer()
                self.fetch()
            case .success:
                self.services.metrics.resume("unknown")
                self.failBeforeHead(ErrorResponse(status: .noContent, error: "unknown_stream", message: "no recorded stream has this stream_id (never started, or expired)"))
            case .failure:
                self.services.metrics.resume("unavailable")
                self.failBeforeHead(
                    ErrorResponse(
                        status: .serviceUnavailable,
                        error: "redis_unavailable",
                        message: "recorded streams cannot be read now; retry shortly",
                        retryAfter: .seconds(1)
                    )
                )
            }
        }
    }

    func cancel() {
        guard !self.finished else { return }
        self.end()
    }

    func resume() {
        guard self.paused, !self.finished else { return }
        self.paused = false
        self.fetch()
    }

    // MARK: From the group

    /// Read on our own from our position (the replay, or after falling behind).
    func catchUp() {
        self.fetch()
    }

    /// Events the group read; `events` are consecutive.
    func offer(_ events: ArraySlice<RecordedEvent>) {
        guard !self.finished, self.responded else { return }
        if self.fetching {
            self.fetchAgain = true  // our own read may have been sent before these existed
            return
        }
        guard !self.paused, let first = events.first, let last = events.last, last.id > self.position else { return }
        guard first.id <= self.position + 1 else {
            self.fetch()  // behind the group: catch up alone
            return
        }
        guard self.session.isWritable else {
            self.paused = true
            return
        }
        self.deliver(events.drop { $0.id <= self.position }, fromOwnRead: false)
    }

    // MARK: Fetching

    private func fetch() {
        guard !self.finished, self.responded else { return }
        if self.fetching {
            self.fetchAgain = true
            return
        }
        guard self.session.isWritable else {
            self.paused = true
            return
        }
        self.fetching = true
        self.fetchAgain = false
        self.services.send(self.keys.readEvents(after: self.position), loop: self.loop, timed: false).assumeIsolated().whenComplete { result in
            self.fetching = false
            guard !self.finished else { return }
            switch result {
            case .success(let reply):
                self.deliver(reply)
            case .failure:
                self.failMidStream(message: "the recording cannot be read now", reason: "recording_unavailable")
            }
        }
    }

    private func deliver(_ reply: RESPValue) {
        guard let entries = reply.array else {
            self.failMidStream(message: "the recording could not be read", reason: "recording_unreadable")
            return
        }
        var events: [RecordedEvent] = []
        events.reserveCapacity(entries.count)
        for entry in entries {
            guard let recorded = RecordedEvent(entry) else {
                self.failMidStream(message: "the recording could not be read", reason: "recording_unreadable")
                return
            }
            events.append(recorded)
        }
        self.deliver(events[...], fromOwnRead: true)
        guard !self.finished else { return }
        if entries.count == StreamKeys.readBatch || self.fetchAgain {
            self.fetch()
        } else {
            self.group?.caughtUp(to: self.position)
        }
    }

    /// Sends `events`, which must continue exactly where the client is.
    private func deliver(_ events: ArraySlice<RecordedEvent>, fromOwnRead: Bool) {
        defer { if !events.isEmpty { self.services.metrics.replayedEvents.increment(by: events.count) } }
        for recorded in events {
            guard recorded.id == self.position + 1 else {
                self.failMidStream(message: "the recording has a gap; start a new stream", reason: "recording_incomplete")
                return
            }
            self.position = recorded.id
            if recorded.isFinal {
                self.end()
                self.session.sourceFinished(final: .recorded(recorded.bytes))
                return
            }
            self.session.sourceProducedRaw(recorded.bytes, queued: true)
        }
        if !events.isEmpty {
            self.lastEvent = .now()
            self.lastClientWrite = self.lastEvent
            self.session.sourceSendQueued()
        }
        if !fromOwnRead, !self.finished, !self.session.isWritable { self.paused = true }
    }

    private func end() {
        self.finished = true
        self.wheelTimer.cancel(on: self.loop.wheel)
        if let group = self.group {
            self.group = nil
            group.remove(self)
            self.services.metrics.followers.decrement()
        }
    }

    private func failBeforeHead(_ response: ErrorResponse) {
        self.end()
        self.session.sourceFailed(response: response, message: response.message, reason: response.error, detail: nil, upstreamStatus: nil)
    }

    private func failMidStream(message: String, reason: String) {
        self.end()
        let response = ErrorResponse(status: .badGateway, error: reason, message: message)
        self.session.sourceFailed(response: response, message: message, reason: reason, detail: nil, upstreamStatus: nil)
    }

    // MARK: Timer

    /// A recording that stops growing (its daemon died) ends the follow after the upstream
    /// idle timeout plus a margin: the producer itself would have failed by then.
    private var idleLimit: TimeAmount { TimeAmount(self.timeouts.upstreamIdle) + .seconds(10) }

    private func armTimer() {
        guard !self.finished else { return }
        var next = min(self.startedAt + TimeAmount(self.timeouts.maxStreamDuration), self.lastEvent + self.idleLimit)
        if self.timeouts.keepAliveInterval > .zero {
            next = min(next, self.lastClientWrite + TimeAmount(self.timeouts.keepAliveInterval))
        }
        self.wheelTimer.arm(self, on: self.loop.wheel, after: max(.milliseconds(1), next - .now()))
    }


    func timerFired(token: UInt32) {
        guard self.wheelTimer.fired(token), !self.finished else { return }
        let now = NIODeadline.now()
        if now >= self.startedAt + TimeAmount(self.timeouts.maxStreamDuration) {
            self.failMidStream(message: "the stream reached its maximum duration", reason: "max_duration")
            return
        }
        if now >= self.lastEvent + self.idleLimit, !self.paused {
            self.failMidStream(message: "the recorded stream stopped growing", reason: "idle_timeout")
            return
        }
        if self.timeouts.keepAliveInterval > .zero, now >= self.lastClientWrite + TimeAmount(self.timeouts.keepAliveInterval) {
            self.lastClientWrite = now
            self.session.sourceProducedKeepAlive()
        }
        self.armTimer()
    }
}

/// One entry of a recording: `0-N` with fields `e` (the event's SSE bytes) and, on the last,
/// `end 1`.
struct RecordedEvent: Equatable {
    var id: Int64
    var bytes: ByteBuffer
    var isFinal: Bool

    init(id: Int64, bytes: ByteBuffer, isFinal: Bool) {
        self.id = id
        self.bytes = bytes
        self.isFinal = isFinal
    }

    init?(_ entry: RESPValue) {
        guard let pair = entry.array, pair.count == 2, let entryID = pair[0].string, entryID.hasPrefix("0-"),
            let id = Int64(entryID.dropFirst(2)), let fields = Self.fields(pair[1])
        else { return nil }
        var bytes: ByteBuffer?
        var isFinal = false
        var index = 0
        while index + 1 < fields.count {
            switch fields[index].string {
            case "e": bytes = fields[index + 1].bytes
            case "end": isFinal = fields[index + 1].string == "1"
            default: break
            }
            index += 2
        }
        guard let bytes else { return nil }
        self.init(id: id, bytes: bytes, isFinal: isFinal)
    }

    /// Field–value list: a flat array (RESP2) or a map (RESP3).
    private static func fields(_ value: RESPValue) -> [RESPValue]? {
        if case .map(let pairs) = value { return pairs.flatMap { [$0.key, $0.value] } }
        return value.array
    }
}
