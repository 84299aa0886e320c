import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import HandoffDaemon

@Suite struct TimerWheelTests {
    /// Records when each labelled timer fired, in milliseconds since the recorder was made.
    final class Recorder: TimerWheelTarget, @unchecked Sendable {
        // @unchecked Sendable: touched only on the wheel's loop; read after it is done.
        var started = NIODeadline.now()
        var fired: [(token: UInt32, milliseconds: Int64)] = []
        var onFire: ((UInt32) -> Void)?
        private var labels: [UInt32: UInt32] = [:]

        /// Schedules a timer that is recorded as `label` when it fires.
        func schedule(on wheel: TimerWheel, label: UInt32, after delay: TimeAmount) {
            self.labels[wheel.schedule(self, after: delay).serial] = label
        }

        func timerFired(token: UInt32) {
            let label = self.labels[token] ?? 0
            self.fired.append((label, (NIODeadline.now() - self.started).nanoseconds / 1_000_000))
            self.onFire?(label)
        }

        var wheelTimer = WheelTimer()  // unused: the recorder schedules on the wheel directly
    }

    /// One timer through ``WheelTimer``, as the daemon's streams and sources use it.
    final class Probe: TimerWheelTarget, @unchecked Sendable {
        // @unchecked Sendable: touched only on the wheel's loop.
        var wheelTimer = WheelTimer()
        var fired: [UInt32] = []
        var onFire: (() -> Void)?

        func timerFired(token: UInt32) {
            guard self.wheelTimer.fired(token) else { return }
            self.fired.append(token)
            self.onFire?()
        }
    }

    /// Runs `body` on a loop and waits (up to 5 s, so a busy machine cannot make it flaky) until
    /// `expected` timers fired, then a little longer to catch any extra one.
    private func run(slots: Int = 4096, expecting expected: Int, _ body: @escaping @Sendable (TimerWheel, Recorder) -> Void) async throws -> [(token: UInt32, milliseconds: Int64)] {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let recorder = Recorder()
        let wheel = try await loop.submit { NIOLoopBound(TimerWheel(eventLoop: loop, slotCount: slots), eventLoop: loop) }.get()
        try await loop.submit {
            recorder.started = .now()
            body(wheel.value, recorder)
        }.get()
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(5)
        while try await loop.submit({ recorder.fired.count }).get() < expected, clock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: .milliseconds(30))
        let fired = try await loop.submit { recorder.fired }.get()
        try await group.shutdownGracefully()
        return fired
    }

    @Test func firesInDueOrderNotSchedulingOrder() async throws {
        let fired = try await self.run(expecting: 3) { wheel, recorder in
            recorder.schedule(on: wheel, label: 3, after: .milliseconds(60))
            recorder.schedule(on: wheel, label: 1, after: .milliseconds(10))
            recorder.schedule(on: wheel, label: 2, after: .milliseconds(30))
        }
        #expect(fired.map(\.token) == [1, 2, 3])
        #expect(fired[0].milliseconds >= 10 && fired[2].milliseconds >= 60)
        #expect(fired[2].milliseconds < 2000)
    }

    @Test func timersLongerThanATurnWaitWholeTurns() async throws {
        // 8 slots of 1 ms: a turn is 8 ms, so 50 ms is six turns and a bit.
        let fired = try await self.run(slots: 8, expecting: 3) { wheel, recorder in
            recorder.schedule(on: wheel, label: 50, after: .milliseconds(50))
            recorder.schedule(on: wheel, label: 5, after: .milliseconds(5))
            recorder.schedule(on: wheel, label: 21, after: .milliseconds(21))
        }
        #expect(fired.map(\.token) == [5, 21, 50])
        #expect(fired[2].milliseconds >= 50 && fired[2].milliseconds < 2000)
        #expect(fired[1].milliseconds >= 21)
    }

    @Test func timersScheduledWhileFiringDoNotDelayOlderOnes() async throws {
        let fired = try await self.run(expecting: 3) { wheel, recorder in
            recorder.schedule(on: wheel, label: 1, after: .milliseconds(5))
            recorder.schedule(on: wheel, label: 2, after: .milliseconds(20))
            recorder.onFire = { token in
                if token == 1 { recorder.schedule(on: wheel, label: 9, after: .milliseconds(80)) }
            }
        }
        #expect(fired.map(\.token) == [1, 2, 9])
        // Token 2 (due at 20 ms) must not wait for the driver armed for token 9 (due at 85 ms).
        #expect(fired[2].milliseconds - fired[1].milliseconds >= 30, "fired at \(fired)")
    }

    /// Runs `body` on a fresh loop with a wheel, waits `milliseconds`, then runs `after`.
    private func onLoop<T: Sendable>(slots: Int = 4096, _ body: @escaping @Sendable (TimerWheel) -> T, thenAfter milliseconds: Int, _ after: @escaping @Sendable (TimerWheel, T) -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let wheel = try await loop.submit { NIOLoopBound(TimerWheel(eventLoop: loop, slotCount: slots), eventLoop: loop) }.get()
        let value = try await loop.submit { body(wheel.value) }.get()
        try await Task.sleep(for: .milliseconds(milliseconds))
        try await loop.submit { after(wheel.value, value) }.get()
        try await group.shutdownGracefully()
    }

    /// Arms `a` and then `b` so that they share a bucket (`b` behind `a`): the two schedules
    /// read the clock apart and may round to different ticks, so try again until they agree.
    static func armInOneSlot(_ a: Probe, _ first: TimeAmount, _ b: Probe, _ second: TimeAmount, on wheel: TimerWheel) {
        for _ in 0..<100 {
            a.wheelTimer.arm(a, on: wheel, after: first)
            b.wheelTimer.arm(b, on: wheel, after: second)
            if a.wheelTimer.handle?.slot == b.wheelTimer.handle?.slot { break }
        }
        #expect(a.wheelTimer.handle?.slot == b.wheelTimer.handle?.slot)
        #expect(b.wheelTimer.handle?.index == a.wheelTimer.handle.map { $0.index + 1 })
    }

    /// A weak reference, handed between the test and the loop (with a strong one while `kept`).
    final class Weak: @unchecked Sendable {
        weak var probe: Probe?
        var kept: Probe?
        init(_ probe: Probe, keep: Bool = false) {
            self.probe = probe
            self.kept = keep ? probe : nil
        }
    }

    @Test func aCancelledTimerLetsGoOfItsTargetAtOnce() async throws {
        try await self.onLoop({ wheel -> Weak in
            let probe = Probe()
            probe.wheelTimer.arm(probe, on: wheel, after: .milliseconds(30))
            probe.wheelTimer.cancel(on: wheel)
            #expect(wheel.entries == 0)
            return Weak(probe)  // the probe's only strong reference ends here
        }, thenAfter: 0) { _, weak in
            #expect(weak.probe == nil, "the wheel still holds a cancelled timer's target")
        }
    }

    @Test func aCancelledTimerNeverFires() async throws {
        try await self.onLoop({ wheel -> Probe in
            let probe = Probe()
            probe.wheelTimer.arm(probe, on: wheel, after: .milliseconds(5))
            probe.wheelTimer.cancel(on: wheel)
            return probe
        }, thenAfter: 40) { _, probe in
            #expect(probe.fired.isEmpty)
        }
    }

    @Test func aLongTimerThatMovedIsStillCancelled() async throws {
        // 8 slots of 1 ms: a short timer and a long one in the same slot. When the short one
        // fires, the long one moves from second place in its bucket to first.
        try await self.onLoop(slots: 8, { wheel -> (short: Probe, long: Weak) in
            let short = Probe()
            let long = Probe()
            Self.armInOneSlot(short, .milliseconds(3), long, .milliseconds(3 + 8 * 600), on: wheel)
            return (short, Weak(long, keep: true))
        }, thenAfter: 40) { wheel, probes in
            #expect(probes.short.fired.count == 1)
            let long = try! #require(probes.long.probe)
            #expect(long.wheelTimer.handle != nil && long.fired.isEmpty)
            long.wheelTimer.cancel(on: wheel)
            #expect(wheel.entries == 0, "the moved timer was not found")
            probes.long.kept = nil
        }
    }

    @Test func aTimerCancelledWhileItsBucketFiresIsReleased() async throws {
        // Two timers due in the same tick: the first to fire cancels the other, a long one
        // (several turns of 8 slots), which must then neither fire nor stay held.
        try await self.onLoop(slots: 8, { wheel -> (first: Probe, second: Weak) in
            let first = Probe()
            let second = Probe()
            Self.armInOneSlot(first, .milliseconds(5), second, .milliseconds(5 + 8 * 600), on: wheel)
            first.onFire = { [weak second] in second?.wheelTimer.cancel(on: wheel) }
            return (first, Weak(second))
        }, thenAfter: 40) { wheel, probes in
            #expect(probes.first.fired.count == 1)
            #expect(wheel.entries == 0, "the timer cancelled while its bucket fired is still pending")
            #expect(probes.second.probe == nil, "the wheel still holds it")
        }
    }

    @Test func rearmingReplacesThePendingTimer() async throws {
        try await self.onLoop({ wheel -> Probe in
            let probe = Probe()
            probe.wheelTimer.arm(probe, on: wheel, after: .milliseconds(5))
            probe.wheelTimer.arm(probe, on: wheel, after: .milliseconds(10))
            #expect(wheel.entries == 1)
            return probe
        }, thenAfter: 60) { wheel, probe in
            #expect(probe.fired.count == 1 && probe.wheelTimer.handle == nil)
            #expect(wheel.entries == 0)
        }
    }
}
