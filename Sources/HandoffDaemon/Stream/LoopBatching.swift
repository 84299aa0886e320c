import Glibc
import NIOCore
import NIOPosix

/// When an event loop under load goes back to waiting: at most once per `window`.
///
/// A loop that sleeps in `epoll_wait` is woken by each upstream frame that arrives alone. At a
/// thousand streams a second that is a context switch, a wait and a loop pass per relayed
/// event, about as much CPU as relaying the event itself. A loop that last woke less than a
/// window ago rests for the rest of the window first, then finds everything that arrived
/// meanwhile ready in one wait. Latency grows by at most a window, and only under load: a
/// loop idle for a window handles its next wake at once, and a loop whose work fills the
/// window never rests.
struct LoopBatching: Sendable {
    /// Nanoseconds between wake-ups, at least.
    let window: UInt64
    /// A shorter rest is not worth a sleep.
    static let shortestRest: UInt64 = 20_000

    init(window: Duration) {
        let (seconds, attoseconds) = window.components
        self.window = UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }

    /// How long to rest, in nanoseconds, after a tick that ended `cycle` nanoseconds after the
    /// loop's last rest (or, if it did not rest, its last tick) ended.
    func rest(afterCycle cycle: UInt64) -> UInt64 {
        guard cycle < self.window else { return 0 }
        let rest = self.window - cycle
        return rest >= Self.shortestRest ? rest : 0
    }
}

/// Applies ``LoopBatching`` to every loop of a group: NIO calls it on the loop's own thread
/// after each tick, just before the loop waits again.
final class LoopBatcher: NIOEventLoopMetricsDelegate, Sendable {
    /// One loop's last rest. Touched only by that loop's thread.
    private final class LoopClock: @unchecked Sendable {
        var lastRestEnded: UInt64 = 0
    }

    private let batching: LoopBatching
    private let clocks = ThreadSpecificVariable<LoopClock>()

    init(window: Duration) {
        self.batching = LoopBatching(window: window)
    }

    func processedTick(info: NIOEventLoopTickInfo) {
        let clock: LoopClock
        if let existing = self.clocks.currentValue {
            clock = existing
        } else {
            clock = LoopClock()
            self.clocks.currentValue = clock
        }
        let ended = info.endTime.uptimeNanoseconds
        let rest = self.batching.rest(afterCycle: ended &- clock.lastRestEnded)
        guard rest > 0 else {
            clock.lastRestEnded = ended
            return
        }
        var remaining = timespec(tv_sec: Int(rest / 1_000_000_000), tv_nsec: Int(rest % 1_000_000_000))
        var left = timespec()
        while nanosleep(&remaining, &left) == -1 && errno == EINTR { remaining = left }
        clock.lastRestEnded = NIODeadline.now().uptimeNanoseconds
    }
}
