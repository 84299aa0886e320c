@testable import HandoffDaemon
import Testing

/// The write-progress timer's rules, without sockets.
@Suite struct WriteProgressTests {
    @Test func writesThatLeaveAtOnceNeedNoTimer() {
        var progress = WriteProgress()
        #expect(progress.observe(pendingBytes: 0, sentBytes: 100) == WriteProgress.Action.none)
        #expect(progress.observe(pendingBytes: 0, sentBytes: 200) == WriteProgress.Action.none)
        #expect(!progress.isWaiting)
    }

    @Test func waitingBytesArmTheTimerAndOnlyProgressReArmsIt() {
        var progress = WriteProgress()
        #expect(progress.observe(pendingBytes: 10, sentBytes: 100) == .armTimer)
        // More queued, nothing taken: no progress, the timer keeps running.
        #expect(progress.observe(pendingBytes: 50, sentBytes: 100) == WriteProgress.Action.none)
        // The kernel took some: progress.
        #expect(progress.observe(pendingBytes: 30, sentBytes: 120) == .armTimer)
        #expect(progress.observe(pendingBytes: 0, sentBytes: 150) == .drained)
    }

    /// The defect this replaces: a later write pushed out everything that waited, and nobody
    /// stopped the timer, so a healthy stream was cut as `write_timeout` afterwards.
    @Test func aWriteThatFlushesEverythingDrains() {
        var progress = WriteProgress()
        #expect(progress.observe(pendingBytes: 4096, sentBytes: 8192) == .armTimer)
        // The next event's write found room for the waiting bytes and its own.
        #expect(progress.observe(pendingBytes: 0, sentBytes: 12_400) == .drained)
        #expect(!progress.isWaiting)
        // Later writes that leave at once arm nothing.
        #expect(progress.observe(pendingBytes: 0, sentBytes: 12_500) == WriteProgress.Action.none)
    }
}
