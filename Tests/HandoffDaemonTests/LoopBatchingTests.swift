@testable import HandoffDaemon
import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import NIOConcurrencyHelpers
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

    /// A stream given to a resting loop starts during the rest, on the loop's own thread, and
    /// the rest goes on to its end (what else arrived still waits for it). A stream given
    /// before a rest starts in it. (Nothing else starts the streams here: one that started
    /// started in the rest, whatever the machine's load did to the timing.)
    @Test func aStreamGivenToARestingLoopStartsInTheRestAndTheRestGoesOn() async throws {
        let gate = RestGate(longestStartWait: 1_000_000_000)
        let (started, length, restingThread) = try await self.give(gate, aStreamAfter: .zero, ofARestOf: .seconds(2))
        let start = try #require(started, "the stream did not start during the rest")
        #expect(pthread_equal(start, restingThread) != 0)
        #expect(length >= .milliseconds(1999), "the rest lasted \(length)")

        let early = NIOLockedValueBox(false)
        gate.deliver { early.withLockedValue { $0 = true } }
        #expect(self.rest(gate, for: .milliseconds(200)) >= .milliseconds(199))
        #expect(early.withLockedValue { $0 }, "the waiting stream did not start in the rest")
    }

    /// A busy loop (4 events or more per millisecond of its last window) is woken for a new
    /// stream only when its rest would keep the stream waiting longer than the gate allows; a
    /// lightly loaded loop always is. Rests of 2 s; the busy gate lets a stream wait 1 s.
    @Test func aBusyLoopIsWokenOnlyForARestThatWouldLastTooLong() async throws {
        let gate = RestGate(longestStartWait: 1_000_000_000)
        // 4 events relayed in a 1 ms window.
        gate.relayed = 4
        gate.tickEnded(at: 1_000_000, window: 1_000_000)
        let early = try await self.give(gate, aStreamAfter: .zero, ofARestOf: .seconds(2))
        #expect(early.started != nil, "a stream given at the start of a busy loop's rest waited for its end")
        let late = try await self.give(gate, aStreamAfter: .milliseconds(1200), ofARestOf: .seconds(2))
        #expect(late.started == nil, "a busy loop woke for a stream given less than 1 s before its rest's end")
        gate.startWaiting()
        let light = RestGate(longestStartWait: 3_000_000_000)
        light.relayed = 3
        light.tickEnded(at: 1_000_000, window: 1_000_000)
        #expect(try await self.give(light, aStreamAfter: .zero, ofARestOf: .seconds(2)).started != nil, "a lightly loaded loop did not wake")
    }

    /// Gives `gate` a stream `delay` after a rest of `length` (on a thread of its own) is seen
    /// to begin, and while it lasts: the thread the stream started on (nil if it did not start
    /// during the rest), how long the rest lasted, and the resting thread.
    private func give(_ gate: RestGate, aStreamAfter delay: Duration, ofARestOf length: Duration) async throws
        -> (started: pthread_t?, length: Duration, thread: pthread_t)
    {
        let started = NIOLockedValueBox<pthread_t?>(nil)
        async let rested = onThread { () -> (Duration, pthread_t) in (self.rest(gate, for: length), pthread_self()) }
        // The stream comes while the loop rests, however late its thread started.
        #expect(await eventually(within: 5000) { gate.isResting })
        try await Task.sleep(for: delay)
        gate.deliver { started.withLockedValue { $0 = pthread_self() } }
        // Otherwise the test saw nothing: a stream given after the rest starts in none.
        #expect(gate.isResting, "the stream was given after the rest had ended")
        let (restLength, thread) = try await rested
        return (started.withLockedValue { $0 }, restLength, thread)
    }

    /// A new stream does not wait out the rest of its loop: one loop with a 400 ms window,
    /// woken every 100 ms by a task that relays nothing, so it rests most of the time. The
    /// median first event of 9 handoffs comes in milliseconds, not the ~200 ms a handoff waits
    /// for the rest to end without the gate. (Timed on a thread of its own, away from the pool.)
    @Test func aHandoffStartsAtOnceOnARestingLoop() async throws {
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

    /// What a start given to a resting loop schedules runs once the rest is over, with
    /// nothing else to wake the loop: NIO wakes a loop for a task from another thread, not for
    /// one its own thread schedules between ticks, so ``EventLoopState/startSoon(_:)`` hands
    /// the loop a task too. Two tasks a moment apart make an idle loop rest (3 s, so the test
    /// sees it however loaded the machine); a start given in that rest schedules a timer 10 ms
    /// on, which must fire once the rest ends. Without the task it never fires.
    @Test func whatAStartScheduledInARestRunsAfterTheRest() async throws {
        try await self.withBatchingLoop(window: .seconds(3)) { loops, batcher in
            let loop = loops.next()
            let gate = batcher.gate(for: loop)
            let state = EventLoopState(index: 0, eventLoop: loop, restGate: gate)
            try await loop.submit {}.get()
            try await loop.submit {}.get()
            #expect(await eventually(within: 5000) { gate.isResting })
            let fired = NIOLockedValueBox(false)
            state.startSoon {
                loop.assumeIsolated().scheduleTask(in: .milliseconds(10)) { fired.withLockedValue { $0 = true } }
            }
            #expect(await eventually(within: 8000) { fired.withLockedValue { $0 } }, "the timer set in the rest never fired")
        }
    }

    /// How long a rest of `length` on `gate` lasted.
    private func rest(_ gate: RestGate, for length: Duration) -> Duration {
        let started = ContinuousClock.now
        gate.rest(nanoseconds: UInt64(length.components.seconds) * 1_000_000_000 + UInt64(length.components.attoseconds / 1_000_000_000))
        return ContinuousClock.now - started
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

    /// A mock stream keeps its schedule on a loop that rests: 10 events 50 ms apart (450 ms
    /// from first to last) on a loop with a 300 ms window. The events that came due during a
    /// rest leave together when it ends, so the last leaves about a window after it was due
    /// (~600 ms after the first); when each event was instead timed from the one before, each
    /// waited for a rest to end (~2.4 s). Timed from the first event, so a slow start of the
    /// daemon on a busy machine does not count.
    @Test func aMockStreamKeepsItsScheduleOnARestingLoop() async throws {
        try await self.withBatchingLoop(window: .milliseconds(300)) { loops, batcher in
            try await withDaemon(eventLoopGroup: loops, batcher: batcher, { $0.mock = .init(messages: 10, interval: .milliseconds(50)) }) { daemon, _ in
                let path = daemon.socketPath
                let (length, body) = try await onThread { () -> (Int, String) in
                    let (client, server) = try FakeApache.tcpConnection()
                    defer { client.closeIfOpen() }
                    try FakeApache.handOff(to: path, json: #"{"prompt":"x"}"#, server: server)
                    _ = FakeApache.readUntil("data: ", from: client.rawValue, timeoutMilliseconds: 10_000)
                    let first = FakeApache.monotonicMilliseconds()
                    let bytes = FakeApache.readUntil("[DONE]", from: client.rawValue, timeoutMilliseconds: 5000)
                    return (FakeApache.monotonicMilliseconds() - first, String(decoding: bytes, as: UTF8.self))
                }
                #expect(body.contains("[DONE]"))
                #expect(length < 1200, "the last event came \(length) ms after the first")
            }
        }
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
