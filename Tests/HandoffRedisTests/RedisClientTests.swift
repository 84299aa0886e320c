import HandoffRedis
import HandoffTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// The client against a real `redis-server` on a private loopback port.
@Suite(.enabled(if: RedisServer.isAvailable, "redis-server is not installed"))
struct RedisClientTests {
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    func client(_ url: String) throws -> RedisClient {
        let configuration = try RedisConfiguration(url: url)
        return RedisClient(eventLoop: Self.group.next(), configuration: configuration, tls: try RedisClient.makeTLSContext(for: configuration), logger: Logger(label: "test"))
    }

    func run<T: Sendable>(_ client: RedisClient, _ body: @escaping @Sendable (RedisClient) -> EventLoopFuture<T>) async throws -> T {
        try await client.eventLoop.flatSubmit { body(client) }.get()
    }

    @Test func pipelinesCommandsAndMatchesRepliesInOrder() async throws {
        let server = try await RedisServer.start()
        let client = try self.client(server.url)
        let replies = try await self.run(client) { client in
            let futures = (0..<500).map { i in client.send(RESPCommand("INCRBY", ["counter", .string(String(i))])) }
            return EventLoopFuture.whenAllSucceed(futures, on: client.eventLoop)
        }
        let sums: [Int64?] = (0..<500).map { (i: Int) -> Int64? in Int64(i * (i + 1) / 2) }
        let integers: [Int64?] = replies.map { $0.integer }
        #expect(integers == sums)
        let big = ByteBuffer(repeating: 0x61, count: 300_000)
        let echoed = try await self.run(client) { client in
            client.send(RESPCommand("SET", ["big", .bytes(big)])).flatMap { _ in client.send(RESPCommand("GET", ["big"])) }
        }
        #expect(echoed.bytes == big)
        await self.shutdown(client)
    }

    @Test func anErrorReplyFailsOnlyItsCommand() async throws {
        let server = try await RedisServer.start()
        let client = try self.client(server.url)
        let results = try await self.run(client) { client in
            let bad = client.send(RESPCommand("INCR", ["not-a-number-key"])).flatMap { _ in client.send(RESPCommand("LPUSH", ["not-a-number-key", "x"])) }
            let good = client.send(RESPCommand("PING"))
            return bad.map { _ in "no error" }.recover { "\($0)" }.and(good)
        }
        #expect(results.0.contains("WRONGTYPE"))
        #expect(results.1 == .simpleString("PONG"))
        await self.shutdown(client)
    }

    @Test func aPipelineIsOneFutureAndReportsAnyError() async throws {
        let server = try await RedisServer.start()
        let client = try self.client(server.url)
        let kept = try await self.run(client) { client in
            var pipeline = RESPPipeline()
            for i in 1...100 {
                pipeline.command("XADD", arguments: 4)
                pipeline.argument("stream")
                pipeline.argument("0-", Int64(i))
                pipeline.argument("e")
                pipeline.argument(ByteBuffer(string: "event \(i)"))
                if i == 7 || i == 100 { pipeline.keepReply() }
            }
            pipeline.command("XLEN", arguments: 1)
            pipeline.argument("stream")
            pipeline.keepReply()
            return client.send(pipeline)
        }
        #expect(try await server.cli(["XLEN", "stream"]) == "100")
        #expect(kept.map(\.string) == ["0-7", "0-100", "100"])
        let failed = try await self.run(client) { client in
            var pipeline = RESPPipeline()
            pipeline.command("XADD", arguments: 4)
            pipeline.argument("stream")
            pipeline.argument("0-", 5)          // not after 0-100: refused
            pipeline.argument("e")
            pipeline.argument("late")
            pipeline.command("PING", arguments: 0)
            return client.send(pipeline).map { _ in "succeeded" }.recover { "\($0)" }
        }
        #expect(failed.contains("XADD") && failed.contains("equal or smaller"))
        // The connection is still in step: the next command gets its own reply.
        #expect(try await self.run(client) { $0.send(RESPCommand("XLEN", ["stream"])) } == .integer(100))
        await self.shutdown(client)
    }

    @Test func authenticatesAndSelectsTheDatabaseFromTheURL() async throws {
        let server = try await RedisServer.start(password: "s3cret")
        let client = try self.client("redis://:s3cret@127.0.0.1:\(server.port)/5")
        _ = try await self.run(client) { $0.send(RESPCommand("SET", ["where", "db5"])) }
        #expect(try await server.cli(["-n", "5", "GET", "where"]) == "db5")
        await self.shutdown(client)

        let wrong = try self.client("redis://:wrong@127.0.0.1:\(server.port)")
        await #expect(throws: RedisError.self) { try await self.run(wrong) { $0.send(RESPCommand("GET", ["where"])) } }
        await self.shutdown(wrong)
    }

    @Test func speaksRESP3() async throws {
        let server = try await RedisServer.start(password: "pw")
        let client = try self.client("redis://default:pw@127.0.0.1:\(server.port)?protocol=3")
        let reply = try await self.run(client) { client in
            client.send(RESPCommand("HSET", ["h", "a", "1"])).flatMap { _ in client.send(RESPCommand("HGETALL", ["h"])) }
        }
        guard case .map(let pairs) = reply else {
            Issue.record("HGETALL under RESP3 is a map, got \(reply)")
            return
        }
        #expect(pairs.count == 1 && pairs[0].key.string == "a" && pairs[0].value.string == "1")
        await self.shutdown(client)
    }

    /// `rediss://`: TLS to a server with a self-signed certificate, verified unless told not to.
    @Test func speaksTLS() async throws {
        let server = try await RedisServer.start(password: "pw", tls: true)
        let client = try self.client(server.url + "/3?tls_verify=false")
        _ = try await self.run(client) { $0.send(RESPCommand("SET", ["over", "tls"])) }
        #expect(try await self.run(client) { $0.send(RESPCommand("GET", ["over"])) }.string == "tls")
        await self.shutdown(client)
        let verifying = try self.client(server.url)
        await #expect(throws: RedisError.self) { try await self.run(verifying) { $0.send(RESPCommand("PING")) } }
        await self.shutdown(verifying)
    }

    /// Redis killed: commands fail at once (no queueing on a dead server); back up: they work again.
    @Test func survivesAnOutage() async throws {
        let server = try await RedisServer.start()
        let client = try self.client(server.url)
        _ = try await self.run(client) { $0.send(RESPCommand("SET", ["k", "v"])) }
        await server.stop()
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<3 {
            await #expect(throws: RedisError.self) { try await self.run(client) { $0.send(RESPCommand("GET", ["k"])) } }
        }
        #expect(clock.now - start < .seconds(3))
        try await server.start()
        var answered = false
        for _ in 0..<100 where !answered {
            answered = (try? await self.run(client) { $0.send(RESPCommand("PING")) }) != nil
            if !answered { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(answered)
        await self.shutdown(client)
    }

    /// A server that stops answering: the command fails with a timeout, near its deadline.
    @Test func timesOutACommandWithoutReply() async throws {
        let server = try await RedisServer.start()
        let client = try self.client(server.url + "?timeout_ms=300")
        _ = try await self.run(client) { $0.send(RESPCommand("PING")) }
        _ = try await server.cli(["CLIENT", "PAUSE", "1500", "ALL"])
        let clock = ContinuousClock()
        let start = clock.now
        do {
            _ = try await self.run(client) { $0.send(RESPCommand("GET", ["k"])) }
            Issue.record("a paused server answered")
        } catch let error as RedisError {
            #expect(error.code == .timeout)
        }
        #expect(clock.now - start < .milliseconds(1200))
        await self.shutdown(client)
    }

    @Test func subscribesAndResubscribesAfterAnOutage() async throws {
        let server = try await RedisServer.start()
        let (subscriber, loop, subscribed, received) = try await self.subscriber(url: server.url, channel: "news")
        try await waitUntil { subscribed.withLockedValue { $0 } == 1 }
        _ = try await server.cli(["PUBLISH", "news", "one"])
        try await waitUntil { received.withLockedValue { $0 } == ["news=one"] }

        await server.stop()
        try await server.start()
        try await waitUntil(seconds: 10) { subscribed.withLockedValue { $0 } == 2 }
        _ = try await server.cli(["PUBLISH", "news", "two"])
        try await waitUntil { received.withLockedValue { $0 } == ["news=one", "news=two"] }
        try await loop.submit { subscriber.shutdown() }.get()
    }

    /// A server that accepts and then never answers (a half-open connection, as far as the
    /// client can tell): the subscriber's PINGs go unanswered, so it drops the connection and
    /// connects again, rather than waiting forever for messages.
    @Test func aSubscriberLeavesAConnectionThatStoppedAnswering() async throws {
        let accepted = NIOLockedValueBox(0)
        let server = try await ServerBootstrap(group: Self.group)
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0 += 1 }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress!.port!
        let loop = Self.group.next()
        let subscriber = try await loop.submit {
            let subscriber = RedisSubscriber(eventLoop: loop, configuration: try RedisConfiguration(url: "redis://127.0.0.1:\(port)"), tls: nil, logger: Logger(label: "test"))
            subscriber.livenessInterval = .milliseconds(100)
            subscriber.subscribe("silence")
            return subscriber
        }.get()
        try await waitUntil(seconds: 5) { accepted.withLockedValue { $0 } >= 2 }
        try await loop.submit { subscriber.shutdown() }.get()
        try await server.close()
    }

    /// A healthy server answers the subscriber's PINGs (RESP2 `["pong",""]`, RESP3 `+PONG`):
    /// the subscription is never dropped and messages keep arriving.
    @Test(arguments: [2, 3])
    func aHealthySubscriptionAnswersItsPings(protocolVersion: Int) async throws {
        let server = try await RedisServer.start()
        // Each PONG must come within one interval: 200 ms leaves room for a loaded machine
        // running the whole suite at once (50 ms did not).
        let (subscriber, loop, subscribed, received) = try await self.subscriber(
            url: server.url + "?protocol=\(protocolVersion)", channel: "pings", livenessInterval: .milliseconds(200)
        )
        try await waitUntil { subscribed.withLockedValue { $0 } == 1 }
        try await Task.sleep(for: .milliseconds(1200))  // half a dozen PINGs
        #expect(subscribed.withLockedValue { $0 } == 1, "the subscription was dropped and made again")
        _ = try await server.cli(["PUBLISH", "pings", "still here"])
        try await waitUntil { received.withLockedValue { $0 } == ["pings=still here"] }
        try await loop.submit { subscriber.shutdown() }.get()
    }

    /// A PING left unanswered when the connection went away does not count against the next
    /// connection: the fresh subscription is kept, not dropped at its first check.
    @Test func aPingLostWithItsConnectionDoesNotDropTheNextOne() async throws {
        let server = try await RedisServer.start()
        let clock = ContinuousClock()
        let started = clock.now
        let (subscriber, loop, subscribed, _) = try await self.subscriber(url: server.url, channel: "lost", livenessInterval: .seconds(1))
        try await waitUntil { subscribed.withLockedValue { $0 } == 1 }
        // The PING at 1 s goes unanswered; the server goes away before the check at 2 s.
        _ = try await server.cli(["CLIENT", "PAUSE", "5000", "ALL"])
        try await Task.sleep(until: started + .milliseconds(1300), clock: clock)
        await server.stop()
        try await server.start()
        try await waitUntil(seconds: 10) { subscribed.withLockedValue { $0 } == 2 }
        // Past the new connection's first two checks: the first sends its own PING, the
        // second finds it answered.
        try await Task.sleep(for: .milliseconds(2400))
        #expect(subscribed.withLockedValue { $0 } == 2, "the new connection was dropped for the old connection's PING")
        try await loop.submit { subscriber.shutdown() }.get()
    }

    /// A subscriber to `channel` on a loop of the group, with counters of its subscriptions and
    /// the messages it received (`channel=message`).
    func subscriber(
        url: String,
        channel: String,
        livenessInterval: TimeAmount? = nil
    ) async throws -> (RedisSubscriber, any EventLoop, subscribed: NIOLockedValueBox<Int>, received: NIOLockedValueBox<[String]>) {
        let loop = Self.group.next()
        let received = NIOLockedValueBox<[String]>([])
        let subscribed = NIOLockedValueBox(0)
        let subscriber = try await loop.submit {
            let subscriber = RedisSubscriber(eventLoop: loop, configuration: try RedisConfiguration(url: url), tls: nil, logger: Logger(label: "test"))
            if let livenessInterval { subscriber.livenessInterval = livenessInterval }
            subscriber.onMessage = { channel, message in received.withLockedValue { $0.append("\(channel)=\(String(buffer: message))") } }
            subscriber.onSubscribed = { _ in subscribed.withLockedValue { $0 += 1 } }
            subscriber.subscribe(channel)
            return subscriber
        }.get()
        return (subscriber, loop, subscribed, received)
    }

    func shutdown(_ client: RedisClient) async {
        try? await client.eventLoop.submit { client.shutdown() }.get()
    }
}

/// Polls `condition` every 20 ms until it holds, failing after `seconds`.
func waitUntil(seconds: Double = 5, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met within \(seconds) s")
            return
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
