import Testing

@testable import HandoffBench

/// How long the load generator sleeps between stream starts on a ramp: never a busy spin.
/// At 1 000 handoffs/s the next start is always under a millisecond away; a timeout of 0 there
/// made the generator spin on a core for the whole ramp, a core the daemon it measures needed.
@Suite struct LoadWorkerPacingTests {
    @Test func aStartLessThanAMillisecondAwaySleepsAMillisecond() {
        #expect(LoadWorker.milliseconds(until: 1_300_000, now: 1_000_000) == 1)
        #expect(LoadWorker.milliseconds(until: 1_000_001, now: 1_000_000) == 1)
    }

    @Test func waitsRoundUpAndStopAtATenthOfASecond() {
        #expect(LoadWorker.milliseconds(until: 3_500_000, now: 0) == 4)
        #expect(LoadWorker.milliseconds(until: 4_000_000, now: 0) == 4)
        #expect(LoadWorker.milliseconds(until: 5_000_000_000, now: 0) == 100)
    }

    @Test func aStartAlreadyDueDoesNotWait() {
        #expect(LoadWorker.milliseconds(until: 1_000_000, now: 1_000_000) == 0)
        #expect(LoadWorker.milliseconds(until: 1_000_000, now: 2_000_000) == 0)
    }
}
