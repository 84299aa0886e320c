import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import HandoffDaemon

@Suite struct TimerWheelTests {
    /// Records when each token fired, in milliseconds since the recorder was made.
    final class Recorder: TimerWheelTarget, @unchecked Sendable {
        // @unchecked Sendable: touched only on the wheel's loop; read after it is done.
        var started = NIODeadline.now()
        var fired: [(token: UInt32, milliseconds: Int64)] = []
        var onFire: ((UInt32) -> Void)?

        func timerFired(token: UInt32) {
            self.fired.append((token, (NIODeadline.now() - self.started).nanoseconds / 1_000_000))
            self.onFire?(token)
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
            wheel.schedule(recorder, token: 3, after: .milliseconds(60))
            wheel.schedule(recorder, token: 1, after: .milliseconds(10))
            wheel.schedule(recorder, token: 2, after: .milliseconds(30))
        }
        #expect(fired.map(\.token) == [1, 2, 3])
        #expect(fired[0].milliseconds >= 10 && fired[2].milliseconds >= 60)
        #expect(fired[2].milliseconds < 2000)
    }

    @Test func timersLongerThanATurnWaitWholeTurns() async throws {
        // 8 slots of 1 ms: a turn is 8 ms, so 50 ms is six turns and a bit.
        let fired = try await self.run(slots: 8, expecting: 3) { wheel, recorder in
            wheel.schedule(recorder, token: 50, after: .milliseconds(50))
            wheel.schedule(recorder, token: 5, after: .milliseconds(5))
            wheel.schedule(recorder, token: 21, after: .milliseconds(21))
        }
        #expect(fired.map(\.token) == [5, 21, 50])
        #expect(fired[2].milliseconds >= 50 && fired[2].milliseconds < 2000)
        #expect(fired[1].milliseconds >= 21)
    }

    @Test func timersScheduledWhileFiringDoNotDelayOlderOnes() async throws {
        let fired = try await self.run(expecting: 3) { wheel, recorder in
            wheel.schedule(recorder, token: 1, after: .milliseconds(5))
            wheel.schedule(recorder, token: 2, after: .milliseconds(20))
            recorder.onFire = { token in
                if token == 1 { wheel.schedule(recorder, token: 9, after: .milliseconds(80)) }
            }
        }
        #expect(fired.map(\.token) == [1, 2, 9])
        // Token 2 (due at 20 ms) must not wait for the driver armed for token 9 (due at 85 ms).
        #expect(fired[2].milliseconds - fired[1].milliseconds >= 30, "fired at \(fired)")
    }
}
