import Atomics
import HandoffRedis
import Logging
import NIOCore

/// The daemon's Redis: one pipelined connection per event loop for commands, and one pub/sub
/// connection (on the first loop) whose channels are fanned out to listeners on every loop.
///
/// Nothing here blocks a loop: commands fail fast while Redis is away (the client backs off),
/// and the first failure of an outage is logged once, at warning, and counted.
final class RedisServices: Sendable {
    let settings: DaemonConfiguration.Redis
    /// Command connections, by loop index.
    let clients: [RedisClient]
    private let loops: [EventLoopState]
    private let subscriber: RedisSubscriber
    private let subscriptions: SubscriptionTable
    /// Fan-out tables, by loop index.
    private let fanouts: [ChannelFanout]
    /// Recording batches, by loop index.
    private let batches: [RecordingBatch]
    /// Follow groups, by loop index.
    private let followGroups: [FollowGroupTable]
    let metrics: RedisMetrics
    private let logger: Logger
    /// True while an outage is known (a command failed and none has succeeded since).
    private let inOutage = ManagedAtomic(false)

    init(settings: DaemonConfiguration.Redis, loops: [EventLoopState], metrics: RedisMetrics, logger: Logger) throws {
        let tls = try RedisClient.makeTLSContext(for: settings.connection)
        self.settings = settings
        self.loops = loops
        self.clients = loops.map { RedisClient(eventLoop: $0.eventLoop, configuration: settings.connection, tls: tls, logger: logger) }
        self.subscriber = RedisSubscriber(eventLoop: loops[0].eventLoop, configuration: settings.connection, tls: tls, logger: logger)
        self.subscriptions = SubscriptionTable()
        let channelMessages = metrics.channelMessages
        let ownPrefix = settings.keyPrefix
        self.fanouts = loops.map { _ in
            let fanout = ChannelFanout()
            // The daemon's own wake-ups (followers') are not channel messages.
            fanout.delivered = { channel, count in if !channel.hasPrefix(ownPrefix) { channelMessages.increment(by: count) } }
            return fanout
        }
        self.batches = loops.map { RecordingBatch(loop: $0) }
        self.followGroups = loops.map { _ in FollowGroupTable() }
        self.metrics = metrics
        self.logger = logger
        metrics.up.set(1)
        for batch in self.batches { batch.services = self }
        loops[0].eventLoop.execute { self.wireSubscriber() }
    }

    func keys(for streamID: String) -> StreamKeys {
        StreamKeys(prefix: self.settings.keyPrefix, streamID: streamID)
    }

    /// `loop`'s recording batch.
    func recordingBatch(for loop: EventLoopState) -> RecordingBatch {
        self.batches[loop.index]
    }

    /// `command` on `loop`'s connection, with failures counted; `timed`: its round trip is
    /// recorded (not for the per-event commands, whose batches are timed instead).
    func send(_ command: RESPCommand, loop: EventLoopState, timed: Bool = true) -> EventLoopFuture<RESPValue> {
        self.observed(self.clients[loop.index].send(command), since: timed ? .now() : nil, name: command.name)
    }

    /// Every command of `pipeline` on `loop`'s connection in one write; timed as one.
    func send(_ pipeline: RESPPipeline, loop: EventLoopState) -> EventLoopFuture<[RESPValue]> {
        self.observed(self.clients[loop.index].send(pipeline), since: .now(), name: pipeline.firstName ?? "pipeline")
    }

    /// Counts `future`'s outcome: its round trip from `since` (when timed), a recovery, or a failure.
    private func observed<Value>(_ future: EventLoopFuture<Value>, since started: NIODeadline?, name: String) -> EventLoopFuture<Value> {
        future.assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                if let started { self.metrics.roundTrip.recordNanoseconds((NIODeadline.now() - started).nanoseconds) }
                self.recovered()
            case .failure(let error):
                self.failed(error, command: name)
            }
        }
        return future
    }

    /// A command's failure: counted; an outage's first is logged.
    func failed(_ error: any Error, command: String) {
        let code = (error as? RedisError)?.code
        self.metrics.errors.increment()
        guard code != .server else {
            self.logger.warning("Redis refused a command", metadata: ["command": "\(command)", "error": "\(error)"])
            return
        }
        if !self.inOutage.exchange(true, ordering: .relaxed) {
            self.metrics.up.set(0)
            self.logger.warning(
                "Redis is unavailable: streams go on live without recording; resumes and channels answer 503 until it is back",
                metadata: ["redis": "\(self.settings.connection.redacted)", "error": "\(error)"]
            )
        }
    }

    /// Whether Redis is known to be away now (a command failed, none succeeded since).
    var isInOutage: Bool { self.inOutage.load(ordering: .relaxed) }

    private func recovered() {
        if self.inOutage.load(ordering: .relaxed), self.inOutage.exchange(false, ordering: .relaxed) {
            self.metrics.up.set(1)
            self.logger.notice("Redis is back", metadata: ["redis": "\(self.settings.connection.redacted)"])
        }
    }

    // MARK: Following

    /// Adds `member` to its stream's group on `loop` (where this must run).
    func follow(_ keys: StreamKeys, _ member: FollowSource, loop: EventLoopState) -> FollowGroup {
        let group = self.followGroups[loop.index].group(for: keys) { FollowGroup(services: self, loop: loop, keys: keys) }
        group.add(member)
        return group
    }

    func followGroupEmptied(_ group: FollowGroup, loop: EventLoopState) {
        self.followGroups[loop.index].remove(group)
    }

    // MARK: Pub/sub

    /// Listens to `channel` on `loop` (where this must run). `channelSubscribed` follows once
    /// the subscription is confirmed (at once, asynchronously, when it already is).
    func listen(_ channel: String, _ listener: any ChannelListener, loop: EventLoopState) {
        let fanout = self.fanouts[loop.index]
        let (first, confirmed) = fanout.add(channel, listener)
        if confirmed {
            loop.eventLoop.assumeIsolatedUnsafeUnchecked().execute {
                // Still listening? A listener that left in between is not told.
                if fanout.isListening(channel, listener) { listener.channelSubscribed() }
            }
        }
        if first {
            let index = loop.index
            self.loops[0].eventLoop.execute { self.loopJoined(channel, index: index) }
        }
    }

    /// Stops `listener` listening to `channel` on `loop` (where this must run).
    func unlisten(_ channel: String, _ listener: any ChannelListener, loop: EventLoopState) {
        if self.fanouts[loop.index].remove(channel, listener) {
            let index = loop.index
            self.loops[0].eventLoop.execute { self.loopLeft(channel, index: index) }
        }
    }

    /// Whether the pub/sub connection is up (on the first loop; approximate elsewhere).
    var subscriberIsConnected: Bool { self.subscriptions.connected.load(ordering: .relaxed) }

    private func wireSubscriber() {
        self.subscriber.onSubscribed = { channel in
            self.subscriptions.confirm(channel)
            for index in self.subscriptions.loops(of: channel) {
                let fanout = self.fanouts[index]
                self.loops[index].eventLoop.execute { fanout.subscribed(channel) }
            }
        }
        self.subscriber.onMessage = { channel, message in
            for index in self.subscriptions.loops(of: channel) {
                let fanout = self.fanouts[index]
                self.loops[index].eventLoop.execute { fanout.deliver(channel, message) }
            }
        }
        self.subscriber.onConnectionChange = { up in
            self.subscriptions.connected.store(up, ordering: .relaxed)
            if up {
                self.recovered()
            } else {
                self.subscriptions.unconfirmAll()
                for (index, fanout) in self.fanouts.enumerated() {
                    self.loops[index].eventLoop.execute { fanout.connectionLost() }
                }
                self.failed(RedisError(.connectionClosed, "the pub/sub connection closed"), command: "SUBSCRIBE")
            }
        }
    }

    private func loopJoined(_ channel: String, index: Int) {
        if self.subscriptions.add(channel, loop: index) {
            self.subscriber.subscribe(channel)
            self.metrics.subscriptions.increment()
        } else if self.subscriptions.isConfirmed(channel) {
            let fanout = self.fanouts[index]
            self.loops[index].eventLoop.execute { fanout.subscribed(channel) }
        }
    }

    private func loopLeft(_ channel: String, index: Int) {
        if self.subscriptions.remove(channel, loop: index) {
            self.subscriber.unsubscribe(channel)
            self.metrics.subscriptions.decrement()
        }
    }

    /// Sends the last recordings (a drain's final events) and waits up to a second for their
    /// replies, then closes every connection.
    func shutdown() async {
        for (index, batch) in self.batches.enumerated() {
            try? await self.loops[index].eventLoop.submit { batch.flushNow() }.get()
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(1)
        for (index, client) in self.clients.enumerated() {
            while clock.now < deadline, (try? await self.loops[index].eventLoop.submit({ client.hasPendingReplies }).get()) == true {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        for (index, client) in self.clients.enumerated() {
            try? await self.loops[index].eventLoop.submit { client.shutdown() }.get()
        }
        try? await self.loops[0].eventLoop.submit { self.subscriber.shutdown() }.get()
    }
}

/// Which loops listen to which channel, on the first loop.
// @unchecked Sendable: everything but `connected` is touched only on the first loop.
private final class SubscriptionTable: @unchecked Sendable {
    private var loopsByChannel: [String: Set<Int>] = [:]
    private var confirmed: Set<String> = []
    let connected = ManagedAtomic(false)

    /// True when `channel` had no loop before.
    func add(_ channel: String, loop: Int) -> Bool {
        let first = self.loopsByChannel[channel] == nil
        self.loopsByChannel[channel, default: []].insert(loop)
        return first
    }

    /// True when no loop is left for `channel`.
    func remove(_ channel: String, loop: Int) -> Bool {
        guard var loops = self.loopsByChannel[channel] else { return false }
        loops.remove(loop)
        if loops.isEmpty {
            self.loopsByChannel[channel] = nil
            self.confirmed.remove(channel)
            return true
        }
        self.loopsByChannel[channel] = loops
        return false
    }

    func loops(of channel: String) -> Set<Int> { self.loopsByChannel[channel] ?? [] }
    func confirm(_ channel: String) { if self.loopsByChannel[channel] != nil { self.confirmed.insert(channel) } }
    func isConfirmed(_ channel: String) -> Bool { self.confirmed.contains(channel) }
    func unconfirmAll() { self.confirmed.removeAll() }
}
