public import Logging
public import NIOCore
import NIOPosix
public import NIOSSL

/// A pipelined connection to Redis, owned by one event loop.
///
/// Commands are written as they come and flushed once per loop tick, so a burst of commands
/// leaves in one write and their replies come back in one read; replies are matched to
/// commands in order. The connection opens on first use and after a failure is retried with
/// exponential backoff (100 ms doubling to 5 s): while backing off, commands fail at once with
/// ``RedisError/Code/unavailable`` instead of queueing, so nothing on the loop ever waits on a
/// Redis that is down. A command without a reply within the timeout closes the connection
/// (every later reply would be misattributed) and fails what was in flight.
// @unchecked Sendable: all mutable state is touched only on `eventLoop` (asserted); other
// threads only read the immutable properties.
public final class RedisClient: @unchecked Sendable {
    public let eventLoop: any EventLoop
    public let configuration: RedisConfiguration
    private let tls: NIOSSLContext?
    private let logger: Logger

    private enum State {
        case idle
        case connecting
        case ready(any Channel)
        case backingOff(until: NIODeadline)
        case shutDown
    }

    /// A command or a pipeline on its way out.
    private enum Outgoing {
        case command(RESPCommand, EventLoopPromise<RESPValue>?)
        case pipeline(RESPPipeline, PipelineGroup)

        var replies: Int {
            switch self {
            case .command: 1
            case .pipeline(let pipeline, _): pipeline.count
            }
        }

        func fail(_ error: RedisError) {
            switch self {
            case .command(_, let promise): promise?.fail(error)
            case .pipeline(_, let group): group.fail(error)
            }
        }
    }

    /// A command, or a whole pipeline, waiting for its replies.
    private enum InFlight {
        case command(EventLoopPromise<RESPValue>?, name: String, deadline: NIODeadline)
        case pipeline(PipelineGroup)

        var deadline: NIODeadline {
            switch self {
            case .command(_, _, let deadline): deadline
            case .pipeline(let group): group.deadline
            }
        }

        var name: String {
            switch self {
            case .command(_, let name, _): name
            case .pipeline(let group): group.name
            }
        }

        func fail(_ error: RedisError) {
            switch self {
            case .command(let promise, _, _): promise?.fail(error)
            case .pipeline(let group): group.fail(error)
            }
        }
    }

    /// The replies a pipeline still waits for.
    private final class PipelineGroup {
        let total: Int
        var remaining: Int
        var error: RedisError?
        let promise: EventLoopPromise<[RESPValue]>
        var name = "pipeline"
        var deadline = NIODeadline.now()
        let kept: [Int]
        var nextKept = 0
        var replies: [RESPValue] = []

        init(remaining: Int, kept: [Int], promise: EventLoopPromise<[RESPValue]>) {
            self.total = remaining
            self.remaining = remaining
            self.kept = kept
            self.promise = promise
        }

        /// Whether the reply due next is one the sender kept.
        var keepsNextReply: Bool {
            self.nextKept < self.kept.count && self.kept[self.nextKept] == self.total - self.remaining
        }

        /// Counts one reply that is not kept and is no error; true when it was the last.
        func replyUnread() -> Bool {
            self.remaining -= 1
            guard self.remaining == 0 else { return false }
            if let error = self.error { self.promise.fail(error) } else { self.promise.succeed(self.replies) }
            return true
        }

        /// Counts one reply; true when it was the last.
        func reply(_ value: RESPValue, error: RedisError?) -> Bool {
            if self.error == nil, let error { self.error = error }
            if self.nextKept < self.kept.count, self.kept[self.nextKept] == self.total - self.remaining {
                self.nextKept += 1
                self.replies.append(value)
            }
            self.remaining -= 1
            guard self.remaining == 0 else { return false }
            if let error = self.error { self.promise.fail(error) } else { self.promise.succeed(self.replies) }
            return true
        }

        func fail(_ error: RedisError) {
            self.remaining = 0
            self.promise.fail(self.error ?? error)
        }
    }

    private var state = State.idle
    /// Commands and pipelines waiting for replies, in order (a pipeline is one entry).
    private var inFlight = CircularBuffer<InFlight>()
    /// Replies still due for everything in ``inFlight``.
    private var pendingReplies = 0
    /// What waits for the connection to come up, in order.
    private var waiting = CircularBuffer<Outgoing>()
    private var consecutiveFailures = 0
    private var flushScheduled = false
    private var timer: Scheduled<Void>?
    private var closeError = RedisError(.connectionClosed, "the Redis connection closed")
    /// Most commands queued or in flight; past it commands fail with `overloaded`.
    public var maxPending = 100_000

    /// Subscriber mode: pub/sub messages and subscription confirmations go to ``onPush``
    /// rather than to a command's promise. RESP3 push frames always go there.
    public var subscriberMode = false
    /// Out-of-band messages (pub/sub), on the loop.
    public var onPush: ((RESPValue) -> Void)?
    /// Called on the loop when the connection is up (after `AUTH`/`SELECT`) and when it is lost.
    public var onConnectionChange: ((Bool) -> Void)?
    /// Reconnect by itself after a loss (a subscriber must), rather than on the next command.
    public var reconnectsAutomatically = false

    public init(eventLoop: any EventLoop, configuration: RedisConfiguration, tls: NIOSSLContext? = nil, logger: Logger) {
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.tls = tls
        self.logger = logger
    }

    /// A TLS context for `rediss://` configurations; nil for plain ones.
    public static func makeTLSContext(for configuration: RedisConfiguration) throws -> NIOSSLContext? {
        guard configuration.tls else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        if !configuration.tlsVerify { tls.certificateVerification = .none }
        return try NIOSSLContext(configuration: tls)
    }

    /// Whether the connection is up now.
    public var isConnected: Bool {
        self.eventLoop.assertInEventLoop()
        if case .ready = self.state { return true }
        return false
    }

    /// Sends `command`; the future has its reply, or fails with a ``RedisError`` (an error
    /// reply becomes ``RedisError/Code/server``).
    public func send(_ command: RESPCommand) -> EventLoopFuture<RESPValue> {
        let promise = self.eventLoop.makePromise(of: RESPValue.self)
        self.enqueue(.command(command, promise))
        return promise.futureResult
    }

    /// Sends every command of `pipeline` in one write; the future succeeds when all replied,
    /// with the replies the pipeline kept (``RESPPipeline/keepReply()``), and fails with the
    /// first error (an error reply, or no connection).
    public func send(_ pipeline: RESPPipeline) -> EventLoopFuture<[RESPValue]> {
        self.eventLoop.assertInEventLoop()
        let promise = self.eventLoop.makePromise(of: [RESPValue].self)
        guard !pipeline.isEmpty else {
            promise.succeed([])
            return promise.futureResult
        }
        self.enqueue(.pipeline(pipeline, PipelineGroup(remaining: pipeline.count, kept: pipeline.keptReplies, promise: promise)))
        return promise.futureResult
    }

    private func write(_ pipeline: RESPPipeline, group: PipelineGroup, on channel: any Channel) {
        group.deadline = NIODeadline.now() + TimeAmount(self.configuration.commandTimeout)
        group.name = pipeline.firstName ?? "pipeline"
        self.inFlight.append(.pipeline(group))
        self.pendingReplies += pipeline.count
        if self.timer == nil { self.armTimer() }
        channel.write(pipeline.bytes, promise: nil)
        self.scheduleFlush()
    }

    private func scheduleFlush() {
        guard !self.flushScheduled else { return }
        self.flushScheduled = true
        self.eventLoop.assumeIsolatedUnsafeUnchecked().execute {
            self.flushScheduled = false
            if case .ready(let channel) = self.state { channel.flush() }
        }
    }

    /// Sends `command` without waiting for a reply (subscriber mode: the confirmation comes as a push).
    public func sendWithoutReply(_ command: RESPCommand) {
        self.enqueue(.command(command, nil))
    }

    /// Opens the connection now rather than on the first command.
    public func connect() {
        self.eventLoop.assertInEventLoop()
        if case .idle = self.state { self.startConnecting() }
    }

    /// Closes the connection as broken (a subscriber that stopped answering its PINGs); a
    /// client that reconnects by itself does so.
    public func dropConnection(_ reason: String) {
        self.eventLoop.assertInEventLoop()
        guard case .ready(let channel) = self.state else { return }
        self.logger.warning("closing an unresponsive Redis connection", metadata: ["reason": "\(reason)"])
        self.closeError = RedisError(.timeout, reason)
        self.consecutiveFailures += 1
        channel.close(promise: nil)
    }

    /// Whether commands wait for the connection or for replies.
    public var hasPendingReplies: Bool {
        self.eventLoop.assertInEventLoop()
        return self.pendingReplies > 0 || !self.waiting.isEmpty
    }

    /// Closes the connection for good; commands still waiting or in flight fail.
    public func shutdown() {
        self.eventLoop.assertInEventLoop()
        let previous = self.state
        self.state = .shutDown
        self.timer?.cancel()
        let error = RedisError(.unavailable, "the Redis client is shut down")
        self.failWaiting(error)
        let inFlight = self.inFlight
        self.inFlight.removeAll()
        self.pendingReplies = 0
        for entry in inFlight { entry.fail(error) }
        if case .ready(let channel) = previous { channel.close(promise: nil) }
    }

    private func enqueue(_ outgoing: Outgoing) {
        self.eventLoop.assertInEventLoop()
        guard self.pendingReplies + self.waiting.count + outgoing.replies <= self.maxPending else {
            outgoing.fail(RedisError(.overloaded, "\(self.pendingReplies + self.waiting.count) Redis commands are waiting for replies"))
            return
        }
        switch self.state {
        case .ready(let channel):
            self.write(outgoing, on: channel)
        case .connecting:
            self.waiting.append(outgoing)
        case .idle:
            self.waiting.append(outgoing)
            self.startConnecting()
        case .backingOff(let until):
            if NIODeadline.now() >= until, !self.reconnectsAutomatically {
                self.waiting.append(outgoing)
                self.startConnecting()
            } else {
                outgoing.fail(RedisError(.unavailable, "Redis at \(self.configuration.host):\(self.configuration.port) is unreachable; retrying"))
            }
        case .shutDown:
            outgoing.fail(RedisError(.unavailable, "the Redis client is shut down"))
        }
    }

    private func write(_ outgoing: Outgoing, on channel: any Channel) {
        switch outgoing {
        case .command(let command, let promise): self.write(command, promise: promise, on: channel)
        case .pipeline(let pipeline, let group): self.write(pipeline, group: group, on: channel)
        }
    }

    private func write(_ command: RESPCommand, promise: EventLoopPromise<RESPValue>?, on channel: any Channel) {
        let expectsReply = promise != nil || !self.subscriberMode
        if expectsReply {
            self.inFlight.append(.command(promise, name: command.name, deadline: .now() + TimeAmount(self.configuration.commandTimeout)))
            self.pendingReplies += 1
            if self.timer == nil { self.armTimer() }
        }
        channel.write(command.bytes, promise: nil)
        self.scheduleFlush()
    }

    // MARK: Connecting

    private func startConnecting() {
        self.state = .connecting
        let configuration = self.configuration
        let tls = self.tls
        let bootstrap = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        let handler = try NIOSSLClientHandler(context: tls, serverHostname: configuration.host.first?.isNumber == true || configuration.host.contains(":") ? nil : configuration.host)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHandler(RESPHandler(client: self))
                }
            }
        bootstrap.connect(host: configuration.host, port: configuration.port).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                guard case .connecting = self.state else {
                    channel.close(promise: nil)
                    return
                }
                self.connected(channel)
            case .failure(let error):
                guard case .connecting = self.state else { return }
                self.connectFailed(RedisError(.unavailable, "connecting to Redis at \(configuration.host):\(configuration.port) failed: \(error)"))
            }
        }
    }

    private func connected(_ channel: any Channel) {
        self.state = .ready(channel)
        self.closeError = RedisError(.connectionClosed, "the Redis connection closed")
        // The handshake goes first; later commands are pipelined behind it. A refused AUTH
        // closes the connection, which fails them.
        for command in self.handshake() {
            let promise = self.eventLoop.makePromise(of: RESPValue.self)
            self.write(command, promise: promise, on: channel)
            promise.futureResult.assumeIsolated().whenFailure { error in
                self.logger.error("the Redis handshake failed", metadata: ["command": "\(command.name)", "error": "\(error)"])
                self.closeError = RedisError(.unavailable, "the Redis handshake failed at \(command.name): \(error)")
                self.consecutiveFailures += 1
                channel.close(promise: nil)
            }
        }
        if self.subscriberMode {
            // Before its first SUBSCRIBE a subscriber is an ordinary connection: the handshake
            // replies above come back in order, then only pushes do. Its backoff starts over
            // once a subscription is confirmed (not merely when TCP connects).
            self.onConnectionChange?(true)
        } else {
            self.send(RESPCommand("PING")).assumeIsolated().whenSuccess { _ in
                self.consecutiveFailures = 0
                self.onConnectionChange?(true)
            }
        }
        let waiting = self.waiting
        self.waiting.removeAll()
        for outgoing in waiting { self.write(outgoing, on: channel) }
    }

    private func handshake() -> [RESPCommand] {
        var commands: [RESPCommand] = []
        let configuration = self.configuration
        if configuration.protocolVersion == 3 {
            var arguments: [RESPArgument] = ["3"]
            if let password = configuration.password {
                arguments += ["AUTH", .string(configuration.username ?? "default"), .string(password)]
            }
            commands.append(RESPCommand("HELLO", arguments))
        } else if let password = configuration.password {
            if let username = configuration.username {
                commands.append(RESPCommand("AUTH", [.string(username), .string(password)]))
            } else {
                commands.append(RESPCommand("AUTH", [.string(password)]))
            }
        }
        if configuration.database != 0 { commands.append(RESPCommand("SELECT", [.string(String(configuration.database))])) }
        return commands
    }

    private func connectFailed(_ error: RedisError) {
        self.consecutiveFailures += 1
        self.failWaiting(error)
        self.backOff()
    }

    private func backOff() {
        let delay = TimeAmount.milliseconds(min(5_000, 100 << min(self.consecutiveFailures - 1, 6)))
        self.state = .backingOff(until: .now() + delay)
        if self.reconnectsAutomatically {
            self.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: delay) {
                if case .backingOff = self.state { self.startConnecting() }
            }
        }
    }

    private func failWaiting(_ error: RedisError) {
        let waiting = self.waiting
        self.waiting.removeAll()
        for outgoing in waiting { outgoing.fail(error) }
    }

    // MARK: From the handler

    func received(_ value: RESPValue) {
        // Replies still in the read buffer after the connection was given up belong to no one.
        guard case .ready = self.state else { return }
        if case .push = value {
            self.onPush?(value)
            return
        }
        if self.subscriberMode {
            if Self.isSubscriptionMessage(value) {
                // A confirmed subscription: the connection is healthy, backoff starts over.
                self.consecutiveFailures = 0
                self.onPush?(value)
                return
            }
            if self.inFlight.isEmpty {
                switch value {
                case .simpleString("PONG"):
                    self.onPush?(value)  // a PING's answer in RESP3's subscribed mode
                case .error(let message):
                    // A refused SUBSCRIBE (an ACL, say): the subscription is lost, the connection is not.
                    self.logger.warning("Redis refused a subscription command", metadata: ["error": "\(message)"])
                default:
                    self.protocolViolation("a reply to no command")
                }
                return
            }
        }
        guard let entry = self.inFlight.first else {
            self.protocolViolation("a reply to no command")
            return
        }
        self.pendingReplies -= 1
        switch entry {
        case .pipeline(let group):
            let last: Bool
            if case .error(let message) = value {
                last = group.reply(value, error: RedisError(.server, "Redis refused a command of a pipeline starting with \(group.name): \(message)"))
            } else {
                last = group.reply(value, error: nil)
            }
            if last { self.inFlight.removeFirst() }
        case .command(let promise, let name, _):
            self.inFlight.removeFirst()
            if case .error(let message) = value {
                promise?.fail(RedisError(.server, "Redis refused \(name): \(message)"))
            } else {
                promise?.succeed(value)
            }
        }
    }

    /// Whether the next reply belongs to a pipeline that does not keep it.
    var nextReplyIsUnread: Bool {
        guard !self.subscriberMode, case .ready = self.state, case .pipeline(let group) = self.inFlight.first else { return false }
        return !group.keepsNextReply
    }

    /// A reply ``nextReplyIsUnread`` said nobody reads, and that was no error.
    func receivedUnread() {
        guard case .pipeline(let group) = self.inFlight.first else { return }
        self.pendingReplies -= 1
        if group.replyUnread() { self.inFlight.removeFirst() }
    }

    func protocolViolation(_ message: String) {
        self.logger.error("the Redis connection is out of step; closing it", metadata: ["error": "\(message)"])
        self.closeError = RedisError(.protocolViolation, message)
        if case .ready(let channel) = self.state { channel.close(promise: nil) }
    }

    func channelClosed() {
        let wasReady: Bool
        if case .ready = self.state { wasReady = true } else { wasReady = false }
        guard wasReady else { return }
        self.timer?.cancel()
        self.timer = nil
        let inFlight = self.inFlight
        self.inFlight.removeAll()
        self.pendingReplies = 0
        for entry in inFlight { entry.fail(self.closeError) }
        self.onConnectionChange?(false)
        if self.consecutiveFailures > 0 {
            self.backOff()
        } else {
            self.state = .idle
            if self.reconnectsAutomatically {
                self.consecutiveFailures = 1
                self.backOff()
            }
        }
    }

    private static func isSubscriptionMessage(_ value: RESPValue) -> Bool {
        guard case .array(let elements) = value, let kind = elements.first?.string else { return false }
        switch kind {
        case "message", "pmessage", "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "pong": return true
        default: return false
        }
    }

    // MARK: Timeouts

    private func armTimer() {
        guard let first = self.inFlight.first else { return }
        self.timer = self.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: first.deadline) {
            self.timer = nil
            self.checkTimeouts()
        }
    }

    private func checkTimeouts() {
        guard let first = self.inFlight.first else { return }
        if first.deadline <= .now() {
            self.logger.warning("a Redis command timed out; closing the connection", metadata: ["command": "\(first.name)"])
            self.closeError = RedisError(.timeout, "Redis did not answer \(first.name) within \(self.configuration.commandTimeout)")
            if case .ready(let channel) = self.state { channel.close(promise: nil) }
        } else {
            self.armTimer()
        }
    }
}

/// Decodes replies and hands them to the client, in order.
private final class RESPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let client: RedisClient
    private let parser = RESPParser()
    private var buffer: ByteBuffer?

    init(client: RedisClient) {
        self.client = client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        if self.buffer == nil || self.buffer!.readableBytes == 0 {
            self.buffer = bytes
        } else {
            self.buffer!.writeBuffer(&bytes)
        }
        guard var pending = self.buffer else { return }
        self.buffer = nil
        do {
            while pending.readableBytes > 0 {
                // Replies nobody reads (a recording's XADDs) are checked and counted, not built.
                if self.client.nextReplyIsUnread {
                    guard let skipped = try self.parser.skip(from: &pending) else { break }
                    switch skipped {
                    case .value: self.client.receivedUnread()
                    case .error(let message): self.client.received(.error(message))
                    }
                } else {
                    guard let value = try self.parser.next(from: &pending) else { break }
                    self.client.received(value)
                }
            }
            if pending.readableBytes > 0 { self.buffer = pending }
        } catch {
            self.buffer = nil
            self.client.protocolViolation(error.description)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.client.channelClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
