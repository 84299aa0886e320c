public import Logging
public import NIOCore
public import NIOSSL

/// One pub/sub connection: keeps a set of channels subscribed across reconnects and passes
/// their messages on, on its event loop.
// @unchecked Sendable: all mutable state is touched only on `eventLoop`.
public final class RedisSubscriber: @unchecked Sendable {
    public var eventLoop: any EventLoop { self.client.eventLoop }
    private let client: RedisClient
    private var channels: Set<String> = []

    /// A message published to `channel`.
    public var onMessage: ((_ channel: String, _ message: ByteBuffer) -> Void)?
    /// The server confirmed the subscription to `channel` (again after every reconnect):
    /// messages published from now on will arrive.
    public var onSubscribed: ((_ channel: String) -> Void)?
    /// The connection came up (true) or was lost (false).
    public var onConnectionChange: ((Bool) -> Void)?

    public init(eventLoop: any EventLoop, configuration: RedisConfiguration, tls: NIOSSLContext?, logger: Logger) {
        self.client = RedisClient(eventLoop: eventLoop, configuration: configuration, tls: tls, logger: logger)
        self.client.subscriberMode = true
        self.client.reconnectsAutomatically = true
        self.client.onPush = { [unowned self] value in self.received(value) }
        self.client.onConnectionChange = { [unowned self] up in
            // A PING lost with the old connection says nothing about the new one.
            self.awaitingPong = false
            if up, !self.channels.isEmpty {
                self.client.sendWithoutReply(RESPCommand("SUBSCRIBE", self.channels.sorted().map { .string($0) }))
            }
            self.onConnectionChange?(up)
        }
    }

    private var liveness: RepeatedTask?
    private var awaitingPong = false

    /// How often a subscription proves it is alive: a PING must be answered before the next
    /// one, or the connection is dropped and made again (a half-open connection would
    /// otherwise lose every message silently). Default 15 s; set before the first subscribe.
    public var livenessInterval = TimeAmount.seconds(15)

    private func checkLiveness() {
        guard self.client.isConnected, !self.channels.isEmpty else { return }
        if self.awaitingPong {
            self.awaitingPong = false
            self.client.dropConnection("no answer to PING within \(self.livenessInterval.nanoseconds / 1_000_000) ms")
            return
        }
        self.awaitingPong = true
        self.client.sendWithoutReply(RESPCommand("PING"))
    }

    /// Subscribes to `channel` (now, or as soon as the connection is up).
    public func subscribe(_ channel: String) {
        self.eventLoop.assertInEventLoop()
        if self.liveness == nil {
            self.liveness = self.eventLoop.scheduleRepeatedTask(initialDelay: self.livenessInterval, delay: self.livenessInterval) { [weak self] _ in
                self?.checkLiveness()
            }
        }
        guard self.channels.insert(channel).inserted else { return }
        if self.client.isConnected {
            self.client.sendWithoutReply(RESPCommand("SUBSCRIBE", [.string(channel)]))
        } else {
            self.client.connect()
        }
    }

    public func unsubscribe(_ channel: String) {
        self.eventLoop.assertInEventLoop()
        guard self.channels.remove(channel) != nil else { return }
        if self.client.isConnected { self.client.sendWithoutReply(RESPCommand("UNSUBSCRIBE", [.string(channel)])) }
    }

    public func shutdown() {
        self.liveness?.cancel()
        self.client.shutdown()
    }

    private func received(_ value: RESPValue) {
        if case .simpleString("PONG") = value {
            self.awaitingPong = false
            return
        }
        guard let elements = value.array, let kind = elements.first?.string else { return }
        switch kind {
        case "message" where elements.count == 3:
            guard let channel = elements[1].string, let message = elements[2].bytes else { return }
            self.onMessage?(channel, message)
        case "pong":
            self.awaitingPong = false
        case "subscribe" where elements.count >= 2:
            guard let channel = elements[1].string, self.channels.contains(channel) else { return }
            self.onSubscribed?(channel)
        default:
            return
        }
    }
}
