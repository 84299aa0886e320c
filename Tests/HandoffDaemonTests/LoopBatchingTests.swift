@testable import HandoffDaemon
import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import NIOCore
import NIOPosix
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct LoopBatchingTests {
    @Test func aLoopWokenWithinTheWindowRestsForTheRestOfIt() {
        let batching = LoopBatching(window: .milliseconds(1))
        #expect(batching.window == 1_000_000)
        #expect(batching.rest(afterCycle: 0) == 1_000_000)
        #expect(batching.rest(afterCycle: 400_000) == 600_000)
    }

    @Test func aLoopIdleOrBusyForAWindowDoesNotRest() {
        let batching = LoopBatching(window: .microseconds(1500))
        #expect(batching.window == 1_500_000)
        #expect(batching.rest(afterCycle: 1_500_000) == 0)
        #expect(batching.rest(afterCycle: 60_000_000_000) == 0)
        // Less than a sleep is worth.
        #expect(batching.rest(afterCycle: 1_490_000) == 0)
        #expect(LoopBatching(window: .zero).rest(afterCycle: 0) == 0)
    }

    /// The daemon's own loops batch as configured: of three tasks handed to a loop one after
    /// another, the second wakes it a moment after the first and the third waits out the
    /// window (a sleep never ends early, so the bound is firm).
    @Test func theDaemonsLoopsRestWhenConfigured() async throws {
        var configuration = DaemonConfiguration(listener: .init(socketPath: "/unused"))
        configuration.eventLoops = 1
        configuration.loopBatchWindow = .milliseconds(10)
        let (group, _) = HandoffDaemon.makeEventLoops(configuration)
        let loop = group.next()
        let first = try await loop.submit { NIODeadline.now() }.get()
        _ = try await loop.submit { NIODeadline.now() }.get()
        let third = try await loop.submit { NIODeadline.now() }.get()
        try await group.shutdownGracefully()
        #expect(third - first >= .milliseconds(9), "the third task ran \(third - first) after the first")
    }

    /// A rest ends when a stream is given to the loop, long before its deadline; a loop does
    /// not rest at all while a stream it was given has not started; once it has, rests last
    /// their full time again.
    @Test func aRestEndsWhenTheLoopIsGivenAStream() async throws {
        let gate = RestGate()
        #expect(try await self.rest(gate, for: .seconds(5), givenAStreamAfter: .milliseconds(50)) < .seconds(2))
        #expect(self.rest(gate, for: .seconds(5)) < .seconds(2))
        gate.arrived()
        #expect(self.rest(gate, for: .milliseconds(20)) >= .milliseconds(19))
    }

    /// A new stream does not wait out the rest of a lightly loaded loop: the loop does not
    /// rest while a handoff is on its way, and one that arrives ends the rest. One loop with a
    /// 400 ms window, woken every 100 ms by a task that relays nothing, so it rests most of the
    /// time: the median first event of 9 handoffs comes in milliseconds, not the ~100 ms a
    /// handoff waited for the rest to end. (Timed on a thread of its own, away from the pool.)
    @Test func aHandoffEndsTheRestOfALightlyLoadedLoop() async throws {
        try await self.withBatchingLoop(window: .milliseconds(400)) { loops, batcher in
            let ticker = loops.next().scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(100)) { _ in }
            defer { ticker.cancel() }
            try await withDaemon(eventLoopGroup: loops, batcher: batcher) { daemon, _ in
                let path = daemon.socketPath
                let waits: [Int] = try await onThread {
                    var waits: [Int] = []
                    for _ in 0..<9 {
                        let (client, server) = try FakeApache.tcpConnection()
                        defer { client.closeIfOpen() }
                        let started = FakeApache.monotonicMilliseconds()
                        try FakeApache.handOff(to: path, json: #"{"prompt":"x"}"#, server: server)
                        _ = FakeApache.readUntil("data: ", from: client.rawValue, timeoutMilliseconds: 5000)
                        waits.append(FakeApache.monotonicMilliseconds() - started)
                        usleep(250_000)
                    }
                    return waits.sorted()
                }
                #expect(waits[waits.count / 2] < 50, "first events after \(waits) ms")
            }
        }
    }

    /// A busy loop (it relayed ``RestGate/busyEvents`` events or more in its last window)
    /// finishes its rest when given a stream: a wake per handoff would cost more than the
    /// batching saves. The stream still keeps it from beginning another rest.
    @Test func aBusyLoopFinishesItsRest() async throws {
        let gate = RestGate()
        gate.windowEnded(relayed: RestGate.busyEvents)
        #expect(try await self.rest(gate, for: .milliseconds(300), givenAStreamAfter: .milliseconds(30)) >= .milliseconds(299))
        #expect(self.rest(gate, for: .seconds(5)) < .seconds(2))
        gate.arrived()
        gate.windowEnded(relayed: RestGate.busyEvents - 1)
        #expect(try await self.rest(gate, for: .seconds(5), givenAStreamAfter: .milliseconds(30)) < .seconds(2))
    }

    /// How long a rest of `length` on `gate` lasted.
    private func rest(_ gate: RestGate, for length: Duration) -> Duration {
        let started = ContinuousClock.now
        gate.rest(nanoseconds: UInt64(length.components.seconds) * 1_000_000_000 + UInt64(length.components.attoseconds / 1_000_000_000))
        return ContinuousClock.now - started
    }

    /// How long a rest of `length` on `gate` lasted when a stream was given to the loop `delay`
    /// after it began (the rest runs on a thread of its own, as on a loop).
    private func rest(_ gate: RestGate, for length: Duration, givenAStreamAfter delay: Duration) async throws -> Duration {
        async let rested = onThread { self.rest(gate, for: length) }
        // The stream comes while the loop rests, however late its thread started.
        #expect(await eventually(within: 5000) { gate.isResting })
        try await Task.sleep(for: delay)
        gate.expect()
        return try await rested
    }

    /// One loop made the daemon's way with a `window` too long for an operator to set, so a
    /// busy test machine cannot blur what the tests see; `body` gets the batcher too.
    private func withBatchingLoop(window: Duration = .milliseconds(300), _ body: (MultiThreadedEventLoopGroup, LoopBatcher) async throws -> Void) async throws {
        var configuration = DaemonConfiguration(listener: .init(socketPath: "/unused"))
        configuration.eventLoops = 1
        configuration.loopBatchWindow = window
        let (loops, batcher) = HandoffDaemon.makeEventLoops(configuration)
        do {
            try await body(loops, try #require(batcher))
        } catch {
            try? await loops.shutdownGracefully()
            throw error
        }
        try await loops.shutdownGracefully()
    }

    /// Upstream chunks that reach a resting loop leave together when it wakes: the mock sends
    /// 20 chunks 5 ms apart (95 ms from first to last) while the loop rests in 300 ms windows.
    /// A rest may end in the middle of them, so they may come in two groups (three on a slow
    /// machine), but each group leaves at once, within a few milliseconds. Without batching
    /// they arrive as they were sent, one group spread over 95 ms. (Read on a thread of its
    /// own, away from the test pool.)
    @Test func upstreamChunksThatArriveDuringARestLeaveTogether() async throws {
        try await withMockLLM(.h2c, chunks: 20, delay: .milliseconds(5)) { _, settings in
            try await self.withBatchingLoop { loops, _ in try await withDaemon(eventLoopGroup: loops, { $0.openAI = OpenAIBackend(upstream: settings) }) { daemon, _ in
                let (client, server) = try FakeApache.tcpConnection()
                defer { client.closeIfOpen() }
                try FakeApache.handOff(to: daemon.socketPath, json: #"{"backend":"openai","prompt":"x"}"#, server: server)
                let fd = client.rawValue
                let arrivals = try await onThread { Self.chunkArrivals(from: fd, count: 20) }
                #expect(arrivals.count == 20)
                // Groups: arrivals more than 100 ms apart (a third of the window) start a new one.
                var groups: [[Int]] = []
                for (index, arrival) in arrivals.enumerated() {
                    if index == 0 || arrival - arrivals[index - 1] > 100 { groups.append([]) }
                    groups[groups.count - 1].append(arrival)
                }
                #expect(groups.count <= 3, "the chunks came in \(groups.count) groups: \(arrivals)")
                for group in groups {
                    #expect(group.last! - group.first! < 40, "a group spread over \(group.last! - group.first!) ms: \(arrivals)")
                }
            } }
        }
    }

    /// When each of the first `count` mock chunks (`Mock token N `) reached the client, in
    /// milliseconds on the monotonic clock (chunks read together share a time).
    private static func chunkArrivals(from fd: CInt, count: Int) -> [Int] {
        var arrivals: [Int] = []
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let needle = Array("Mock token ".utf8)
        let deadline = FakeApache.monotonicMilliseconds() + 10_000
        while arrivals.count < count, FakeApache.monotonicMilliseconds() < deadline {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else { continue }
            let read = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard read > 0 else { break }
            let now = FakeApache.monotonicMilliseconds()
            pending += buffer[0..<read]
            // Count the chunks that are whole in what has come so far.
            var start = 0
            while let found = pending[start...].firstRange(of: needle), let end = pending[found.upperBound...].firstIndex(of: UInt8(ascii: " ")) {
                arrivals.append(now)
                start = end + 1
            }
            pending.removeFirst(start)
        }
        return Array(arrivals.prefix(count))
    }

    /// A loop idle for a window handles its next wake at once and rests only after a second
    /// one: two handoffs a moment apart each get their first event without waiting out the
    /// window (the mock's next events are seconds away, so nothing else wakes the loop). The
    /// daemon gets no batcher, so no handoff ends a rest: only the idle rule keeps it prompt.
    @Test func aLoopIdleForAWindowDoesNotRestBeforeItsNextWake() async throws {
        try await self.withBatchingLoop(window: .seconds(1)) { loops, _ in try await withDaemon(eventLoopGroup: loops, { $0.mock = .init(messages: 2, interval: .seconds(5)) }) { daemon, _ in
            try await Task.sleep(for: .milliseconds(1200))
            var clients: [OwnedDescriptor] = []
            defer { for client in clients { client.closeIfOpen() } }
            for _ in 0..<2 {
                let (client, server) = try FakeApache.tcpConnection()
                clients.append(client)
                let started = FakeApache.monotonicMilliseconds()
                try FakeApache.handOff(to: daemon.socketPath, json: #"{"prompt":"x"}"#, server: server)
                let head = try await FakeApache.read(until: "data: ", from: client.rawValue)
                let waited = FakeApache.monotonicMilliseconds() - started
                #expect(String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 200 "))
                #expect(waited < 500, "the first event took \(waited) ms")
            }
        } }
    }
}
