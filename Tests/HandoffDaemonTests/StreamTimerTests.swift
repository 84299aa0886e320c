import Foundation
import HandoffClientKit
@testable import HandoffDaemon
import Testing

/// A stream's timers end with it: nothing stays on a loop's timer wheel (holding the stream
/// and what it references) once the stream is over, however long its timers were set for.
/// At thousands of streams a second, two seconds of linger used to hold ~10 MB of ended
/// streams.
@Suite struct StreamTimerTests {
    /// Pending timers on the daemon's wheels, once they settle to `expected` (or after 1 s).
    private func settledTimers(_ daemon: HandoffDaemon, to expected: Int) async throws -> Int {
        let deadline = FakeApache.monotonicMilliseconds() + 1000
        var pending = try await daemon.pendingTimers()
        while pending != expected, FakeApache.monotonicMilliseconds() < deadline {
            try await Task.sleep(for: .milliseconds(20))
            pending = try await daemon.pendingTimers()
        }
        return pending
    }

    @Test func endedStreamsLeaveNoTimerBehind() async throws {
        try await withDaemon({ configuration in
            configuration.timeouts.linger = .seconds(30)
            configuration.mock = .init(messages: 2, interval: .milliseconds(5))
        }) { daemon, _ in
            for _ in 0..<20 {
                let result = try await exchange(daemon, json: #"{"prompt":"hi"}"#)
                #expect(result.closed && result.response?.eventBlocks.last == "data: [DONE]")
            }
            #expect(await eventually { daemon.activeStreams == 0 && daemon.heldClientDescriptors == 0 })
            let pending = try await self.settledTimers(daemon, to: 0)
            #expect(pending == 0, "\(pending) timers still pending for 20 ended streams")
        }
    }
}
