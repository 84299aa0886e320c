import Atomics
import Glibc
import HandoffWire
import NIOConcurrencyHelpers
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
/// window never rests. A loop does not begin a rest while a handoff is on its way to it, and
/// one that arrives ends the rest of a lightly loaded loop (``RestGate``).
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

/// Keeps a new stream from waiting on a loop's rest. The acceptor counts each stream it gives
/// the loop (``expect()``), and the loop counts it off when it starts it (``arrived()``); the
/// loop does not begin a rest while one waits. A stream given to a resting loop ends the rest
/// when the loop is lightly loaded (it relayed fewer than ``busyEvents`` events in its last
/// window): there, batching saves little and the first bytes would wait for nothing. A busy
/// loop finishes its rest: there a wake per handoff would cost more than batching saves (at
/// 1 000 handoffs/s, 7% of the daemon's CPU), and a new stream waits at most one window.
/// One futex word: the count of waiting streams, and a bit while resting.
// @unchecked Sendable: the word is only touched atomically; `rest` runs on the loop's thread.
final class RestGate: @unchecked Sendable {
    private static let resting: UInt32 = 1 << 31
    private let word: UnsafeMutablePointer<UnsafeAtomic<UInt32>.Storage>
    /// Set by the loop at the end of each window: it relayed at least ``busyEvents`` events.
    private let busy = ManagedAtomic(false)
    /// Events the loop relayed, ever (touched only on the loop's thread).
    var relayed = 0
    /// Events in a window that make a loop busy.
    static let busyEvents = 4

    init() {
        self.word = UnsafeMutablePointer<UnsafeAtomic<UInt32>.Storage>.allocate(capacity: 1)
        self.word.initialize(to: UnsafeAtomic<UInt32>.Storage(0))
    }

    deinit {
        self.word.deinitialize(count: 1)
        self.word.deallocate()
    }

    private var state: UnsafeAtomic<UInt32> { UnsafeAtomic(at: self.word) }
    private var futex: UnsafeMutablePointer<UInt32> { UnsafeMutableRawPointer(self.word).assumingMemoryBound(to: UInt32.self) }

    /// Sleeps `nanoseconds`, unless a stream waits for the loop, or is given to it meanwhile
    /// while the loop is not busy.
    func rest(nanoseconds: UInt64) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let deadline = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec) + nanoseconds
        guard self.state.compareExchange(expected: 0, desired: Self.resting, ordering: .sequentiallyConsistent).exchanged else { return }
        while true {
            // Asleep while no stream waits; a busy loop also while one does.
            let word = self.state.load(ordering: .sequentiallyConsistent)
            guard word == Self.resting || self.busy.load(ordering: .relaxed) else { break }
            guard Syscall.futexWait(self.futex, whileHolding: word, untilMonotonic: deadline) else { break }
        }
        _ = self.state.loadThenBitwiseAnd(with: ~Self.resting, ordering: .sequentiallyConsistent)
    }

    /// Whether the loop is resting now (tests).
    var isResting: Bool { self.state.load(ordering: .sequentiallyConsistent) & Self.resting != 0 }

    /// A stream was given to the loop (the acceptor's thread): a rest ends now, unless the
    /// loop is busy.
    func expect() {
        let before = self.state.loadThenWrappingIncrement(ordering: .sequentiallyConsistent)
        if before & Self.resting != 0, !self.busy.load(ordering: .relaxed) {
            Syscall.futexWake(self.futex)
        }
    }

    /// The loop's own view of its last window (on the loop's thread).
    func windowEnded(relayed events: Int) {
        let busy = events >= Self.busyEvents
        if busy != self.busy.load(ordering: .relaxed) { self.busy.store(busy, ordering: .relaxed) }
    }

    /// The loop started a stream ``expect()`` counted.
    func arrived() {
        self.state.wrappingDecrement(ordering: .sequentiallyConsistent)
    }
}

/// Applies ``LoopBatching`` to every loop of a group: NIO calls it on the loop's own thread
/// after each tick, just before the loop waits again.
final class LoopBatcher: NIOEventLoopMetricsDelegate, Sendable {
    /// One loop's gate and last rest. `lastRestEnded` is touched only by that loop's thread.
    private final class LoopClock: @unchecked Sendable {
        let gate: RestGate
        var lastRestEnded: UInt64 = 0
        /// When the current window of the busy estimate began, and the events relayed by then.
        var windowStarted: UInt64 = 0
        var relayedBefore = 0

        init(gate: RestGate) {
            self.gate = gate
        }
    }

    private let batching: LoopBatching
    private let clocks = ThreadSpecificVariable<LoopClock>()
    private let gates = NIOLockedValueBox([ObjectIdentifier: RestGate]())

    init(window: Duration) {
        self.batching = LoopBatching(window: window)
    }

    /// The gate that ends `loop`'s rests.
    func gate(for loop: any EventLoop) -> RestGate {
        self.gate(forLoop: ObjectIdentifier(loop))
    }

    private func gate(forLoop id: ObjectIdentifier) -> RestGate {
        self.gates.withLockedValue { gates in
            if let gate = gates[id] { return gate }
            let gate = RestGate()
            gates[id] = gate
            return gate
        }
    }

    func processedTick(info: NIOEventLoopTickInfo) {
        let clock: LoopClock
        if let existing = self.clocks.currentValue {
            clock = existing
        } else {
            clock = LoopClock(gate: self.gate(forLoop: info.eventLoopID))
            self.clocks.currentValue = clock
        }
        let ended = info.endTime.uptimeNanoseconds
        if ended &- clock.windowStarted >= self.batching.window {
            clock.gate.windowEnded(relayed: clock.gate.relayed &- clock.relayedBefore)
            clock.windowStarted = ended
            clock.relayedBefore = clock.gate.relayed
        }
        let rest = self.batching.rest(afterCycle: ended &- clock.lastRestEnded)
        guard rest > 0 else {
            clock.lastRestEnded = ended
            return
        }
        clock.gate.rest(nanoseconds: rest)
        clock.lastRestEnded = NIODeadline.now().uptimeNanoseconds
    }
}
