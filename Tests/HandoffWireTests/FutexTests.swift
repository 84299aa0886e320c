import HandoffWire
import Testing

/// The futex wrapper the event loops rest on.
@Suite struct FutexTests {
    @Test func aWaitEndsAtItsDeadlineOrAtOnceWhenTheWordDiffers() {
        let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        defer { word.deallocate() }
        word.initialize(to: 7)
        // A word that differs: the wait returns at once, asking the caller to look again.
        #expect(Syscall.futexWait(word, whileHolding: 8, untilMonotonic: UInt64.max / 2))
        // A deadline in the past: false, the rest is over.
        #expect(!Syscall.futexWait(word, whileHolding: 7, untilMonotonic: 1))
    }

    /// A wait the kernel refuses (here a misaligned word: EINVAL) reports the end of the rest,
    /// so a loop never spins on a futex that cannot wait.
    @Test func aRefusedWaitEndsTheRest() {
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
        defer { storage.deallocate() }
        let misaligned = (storage + 1).bindMemory(to: UInt32.self, capacity: 1)
        #expect(!Syscall.futexWait(misaligned, whileHolding: 0, untilMonotonic: UInt64.max / 2))
    }
}
