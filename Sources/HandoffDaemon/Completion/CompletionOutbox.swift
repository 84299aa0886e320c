import Foundation
import HandoffRedis
import Logging
import NIOCore
import NIOSSL

/// Delivers finished-stream documents to the application, at least once.
///
/// Each document gets a delivery id (in the body and in `X-Handoff-Delivery`, so a receiver
/// can drop a repeat) and is POSTed at once; any answer but `2xx` is retried with backoff
/// (1 s doubling to 5 min) until ``DaemonConfiguration/Completion/maxAge``. With Redis, a
/// document is stored before the first attempt and removed on delivery, so a daemon that
/// restarts (or another daemon sharing the Redis) delivers what was left: every 2 s the
/// outbox claims due documents with a small script, which leases each to one daemon.
/// Everything runs on one event loop.
// @unchecked Sendable: mutable state is touched only on `loop` (submit hops there).
final class CompletionOutbox: @unchecked Sendable {
    private let settings: DaemonConfiguration.Completion
    private let redis: RedisServices?
    private let loop: EventLoopState
    private let tls: NIOSSLContext?
    private let metrics: CompletionMetrics
    private let logger: Logger
    private var inFlight: Set<String> = []
    private var sweeper: RepeatedTask?
    private var stopped = false
    private let hashKey: String
    private let dueKey: String

    /// How long a claimed document stays with the daemon attempting it.
    private var lease: TimeAmount { TimeAmount(self.settings.attemptTimeout) + .seconds(2) }

    init(settings: DaemonConfiguration.Completion, redis: RedisServices?, loop: EventLoopState, metrics: CompletionMetrics, logger: Logger) throws {
        self.settings = settings
        self.redis = redis
        self.loop = loop
        self.metrics = metrics
        self.logger = logger
        if settings.url.tls {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if !settings.verifyCertificates { configuration.certificateVerification = .none }
            self.tls = try NIOSSLContext(configuration: configuration)
        } else {
            self.tls = nil
        }
        let prefix = redis?.settings.keyPrefix ?? "handoff:"
        self.hashKey = "\(prefix){callbacks}"
        self.dueKey = "\(prefix){callbacks}:due"
        if redis != nil {
            loop.eventLoop.execute {
                self.sweeper = loop.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(200), delay: .seconds(2)) { _ in self.sweep() }
            }
        }
    }

    /// Sends `record`'s document (from any loop).
    func submit(_ record: CompletionRecord) {
        let id = Self.newDeliveryID()
        let body = record.document(deliveryID: id)
        let created = NIODeadline.now()
        self.loop.eventLoop.execute {
            guard !self.stopped else { return }
            self.metrics.submitted.increment()
            self.metrics.pending.increment()
            if let redis = self.redis {
                let stored = ByteBuffer(string: "\(Self.epochMilliseconds())\n") .appending(body)
                _ = redis.send(RESPCommand("HSET", [.string(self.hashKey), .string(id), .bytes(stored)]), loop: self.loop)
                _ = redis.send(RESPCommand("ZADD", [.string(self.dueKey), .string(String(Self.epochMilliseconds() + self.lease.nanoseconds / 1_000_000)), .string(id)]), loop: self.loop)
            }
            self.attempt(id: id, body: body, createdAt: created, number: 1)
        }
    }

    /// Lets first attempts under way finish (up to one attempt's timeout, at most 5 s), then stops.
    func shutdown() async {
        let clock = ContinuousClock()
        let deadline = clock.now + min(self.settings.attemptTimeout, .seconds(5))
        while clock.now < deadline, (try? await self.loop.eventLoop.submit({ self.inFlight.count }).get()) ?? 0 > 0 {
            try? await Task.sleep(for: .milliseconds(20))
        }
        try? await self.loop.eventLoop.submit {
            self.stopped = true
            self.sweeper?.cancel()
            if self.redis == nil, !self.inFlight.isEmpty {
                self.logger.warning("callbacks not delivered at shutdown (configure --redis-url to keep them)", metadata: ["count": "\(self.inFlight.count)"])
            }
        }.get()
    }

    // MARK: Attempts

    private func attempt(id: String, body: ByteBuffer, createdAt: NIODeadline, number: Int) {
        guard !self.stopped else { return }
        self.inFlight.insert(id)
        let headers = [
            ("X-Handoff-Signature", CompletionSignature.header(for: body, secret: self.settings.secret)),
            ("X-Handoff-Delivery", id),
            ("X-Handoff-Attempt", String(number)),
        ]
        CompletionPoster.post(body, headers: headers, to: self.settings.url, tls: self.tls, on: self.loop.eventLoop, timeout: TimeAmount(self.settings.attemptTimeout))
            .assumeIsolated().whenComplete { result in
                switch result {
                case .success(let status) where (200..<300).contains(status):
                    self.delivered(id)
                case .success(let status):
                    self.retry(id: id, body: body, createdAt: createdAt, number: number, why: "the receiver answered \(status)")
                case .failure(let error):
                    self.retry(id: id, body: body, createdAt: createdAt, number: number, why: "\(error)")
                }
            }
    }

    private func delivered(_ id: String) {
        self.inFlight.remove(id)
        self.metrics.delivered.increment()
        self.metrics.pending.decrement()
        if let redis = self.redis {
            _ = redis.send(RESPCommand("HDEL", [.string(self.hashKey), .string(id)]), loop: self.loop)
            _ = redis.send(RESPCommand("ZREM", [.string(self.dueKey), .string(id)]), loop: self.loop)
        }
    }

    private func retry(id: String, body: ByteBuffer, createdAt: NIODeadline, number: Int, why: String) {
        let delay = TimeAmount.seconds(Int64(min(300, 1 << min(number - 1, 9))))
        if NIODeadline.now() + delay > createdAt + TimeAmount(self.settings.maxAge) {
            self.inFlight.remove(id)
            self.metrics.failed.increment()
            self.metrics.pending.decrement()
            self.logger.error("a completion callback was given up", metadata: ["delivery_id": "\(id)", "attempts": "\(number)", "error": "\(why)"])
            if let redis = self.redis {
                _ = redis.send(RESPCommand("HDEL", [.string(self.hashKey), .string(id)]), loop: self.loop)
                _ = redis.send(RESPCommand("ZREM", [.string(self.dueKey), .string(id)]), loop: self.loop)
            }
            return
        }
        self.metrics.retried.increment()
        if number == 1 {
            self.logger.warning("a completion callback failed; retrying with backoff", metadata: ["delivery_id": "\(id)", "error": "\(why)"])
        }
        if let redis = self.redis {
            let due = Self.epochMilliseconds() + (delay + self.lease).nanoseconds / 1_000_000
            _ = redis.send(RESPCommand("ZADD", [.string(self.dueKey), .string(String(due)), .string(id)]), loop: self.loop)
        }
        // Bodies waiting for their next attempt are bounded: past the bound, Redis keeps them
        // (the sweep takes them up when due), and without Redis they are given up.
        guard self.retryBytes + body.readableBytes <= Self.maxRetryBytes else {
            self.inFlight.remove(id)
            self.metrics.pending.decrement()
            if self.redis == nil {
                self.metrics.failed.increment()
                self.logger.error("a completion callback was given up: too many wait for retries", metadata: ["delivery_id": "\(id)"])
            }
            return
        }
        self.retryBytes += body.readableBytes
        self.loop.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: delay) {
            self.retryBytes -= body.readableBytes
            self.attempt(id: id, body: body, createdAt: createdAt, number: number + 1)
        }
    }

    /// The most bytes of documents held in memory for a later attempt.
    static let maxRetryBytes = 64 << 20
    private var retryBytes = 0

    // MARK: Recovery (Redis)

    /// Leases a due document to this daemon and returns it: `<created ms>\n<body>`, or nil.
    private static let claimScript = """
        local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
        if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
        local stored = redis.call('HGET', KEYS[2], ARGV[1])
        if not stored then redis.call('ZREM', KEYS[1], ARGV[1]) return false end
        redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
        return stored
        """

    private func sweep() {
        guard let redis = self.redis, !self.stopped else { return }
        let now = Self.epochMilliseconds()
        redis.send(RESPCommand("ZRANGEBYSCORE", [.string(self.dueKey), "-inf", .string(String(now)), "LIMIT", "0", "50"]), loop: self.loop)
            .assumeIsolated().whenSuccess { reply in
                for id in reply.array?.compactMap(\.string) ?? [] where !self.inFlight.contains(id) {
                    self.claim(id, now: now)
                }
            }
    }

    private func claim(_ id: String, now: Int64) {
        guard let redis = self.redis else { return }
        let leaseEnd = now + self.lease.nanoseconds / 1_000_000
        let command = RESPCommand("EVAL", [.string(Self.claimScript), "2", .string(self.dueKey), .string(self.hashKey), .string(id), .string(String(now)), .string(String(leaseEnd))])
        redis.send(command, loop: self.loop).assumeIsolated().whenSuccess { reply in
            guard var stored = reply.bytes, !self.inFlight.contains(id),
                let newline = stored.readableBytesView.firstIndex(of: UInt8(ascii: "\n")),
                let created = stored.readString(length: newline - stored.readerIndex).flatMap({ Int64($0) })
            else { return }
            stored.moveReaderIndex(forwardBy: 1)
            let age = TimeAmount.milliseconds(max(0, Self.epochMilliseconds() - created))
            self.metrics.recovered.increment()
            self.metrics.pending.increment()
            self.attempt(id: id, body: stored, createdAt: .now() - age, number: 1)
        }
    }

    // MARK: Helpers

    private static func newDeliveryID() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<2).map { _ in String(generator.next() as UInt64, radix: 16).leftPadded(to: 16) }.joined()
    }

    static func epochMilliseconds() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000)
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        self.count >= length ? self : String(repeating: "0", count: length - self.count) + self
    }
}

extension ByteBuffer {
    fileprivate func appending(_ other: ByteBuffer) -> ByteBuffer {
        var copy = self
        copy.writeImmutableBuffer(other)
        return copy
    }
}
