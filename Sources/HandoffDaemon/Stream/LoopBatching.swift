import Atomics
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
/// window never rests. A new stream waits for a rest at most half a window, and not at all
/// on a lightly loaded loop (``RestGate``).
struct LoopBatching: Sendable {
    /// Nanoseconds between wake-ups, at least.
    let window: UInt64
    /// A shorter rest is not worth a sleep.
    static let shortestRest: UInt64 = 20_000
    /// Nanoseconds a new stream may wait for a busy loop's rest to end (``RestGate``): half a
    /// window.
    var longestStartWait: UInt64 { self.window / 2 }

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

/// When a thread that batches its wake-ups (an event loop, the client watcher) rests: after
/// each pass, as ``LoopBatching/rest(afterCycle:)`` says, timed from the end of its last rest
/// (or, if it did not rest, of its last pass). On the monotonic clock.
struct RestSchedule {
    let batching: LoopBatching
    private var lastRestEnded: UInt64 = 0

    init(_ batching: LoopBatching) {
        self.batching = batching
    }

    /// A pass ended at `ended`: `rest` sleeps the nanoseconds given, when a rest is due.
    mutating func passEnded(at ended: UInt64, rest: (UInt64) -> Void) {
        let length = self.batching.rest(afterCycle: ended &- self.lastRestEnded)
        guard length > 0 else {
            self.lastRestEnded = ended
            return
        }
        rest(length)
        self.lastRestEnded = Syscall.monotonicNanoseconds()
    }
}

/// Keeps a new stream from waiting long on its loop's rest. The acceptor puts each stream's
/// start in the gate (``deliver(_:)``) and hands the loop a task that starts what waits
/// (``startWaiting()``). A stream given to a resting loop wakes it, and the loop starts the
/// stream on its own thread and rests on: its first bytes leave at once, while everything
/// else that arrived keeps waiting for the window's end. Only a busy loop (it relayed
/// ``busyEventsPerMillisecond`` or more in its last window) is left resting when its rest ends
/// within ``longestStartWait``: waking it for every handoff cost a fifth more CPU per stream at
/// 1 000 handoffs/s (405 against 335 µs in alternating runs).
///
/// The task the acceptor hands the loop is what makes the loop run what a start in a rest
/// scheduled: NIO wakes a loop for a task from another thread, not for one its own thread
/// schedules between ticks, so without it such work could wait for the loop's next I/O.
///
/// One futex word: the count of starts waiting in the gate, and a bit while resting.
// @unchecked Sendable: the word and `restDeadline` are only touched atomically, `waiting`
// under `lock`; `rest` and `startWaiting` run on the loop's thread.
final class RestGate: @unchecked Sendable {
    private static let resting: UInt32 = 1 << 31
    private let word: UnsafeMutablePointer<UnsafeAtomic<UInt32>.Storage>
    /// When the current rest ends (monotonic nanoseconds).
    private let restDeadline = ManagedAtomic<UInt64>(0)
    private let lock = NIOLock()
    private var waiting: [@Sendable () -> Void] = []
    /// Nanoseconds a new stream may wait for a busy loop's rest to end before it wakes the loop.
    let longestStartWait: UInt64
    /// Set by the loop at the end of each window: it relayed at least ``busyEventsPerMillisecond``
    /// events per millisecond of it.
    private let busy = ManagedAtomic(false)
    /// Events the loop relayed, ever, and by the start of the current window of the busy
    /// estimate, which began at `windowStarted` (touched only on the loop's thread).
    var relayed = 0
    private var relayedBefore = 0
    private var windowStarted: UInt64 = 0
    /// The rate of relayed events that makes a loop busy.
    static let busyEventsPerMillisecond = 4

    /// `longestStartWait`: how long a new stream may wait for the rest to end.
    init(longestStartWait: UInt64) {
        self.longestStartWait = longestStartWait
        self.word = UnsafeMutablePointer<UnsafeAtomic<UInt32>.Storage>.allocate(capacity: 1)
        self.word.initialize(to: UnsafeAtomic<UInt32>.Storage(0))
    }

    deinit {
        self.word.deinitialize(count: 1)
        self.word.deallocate()
    }

    private var state: UnsafeAtomic<UInt32> { UnsafeAtomic(at: self.word) }
    private var futex: UnsafeMutablePointer<UInt32> { UnsafeMutableRawPointer(self.word).assumingMemoryBound(to: UInt32.self) }

    /// Sleeps `nanoseconds`, starting the streams that wake the loop meanwhile as they come.
    func rest(nanoseconds: UInt64) {
        let deadline = Syscall.monotonicNanoseconds() + nanoseconds
        self.restDeadline.store(deadline, ordering: .sequentiallyConsistent)
        _ = self.state.loadThenBitwiseOr(with: Self.resting, ordering: .sequentiallyConsistent)
        while true {
            let word = self.state.load(ordering: .sequentiallyConsistent)
            if word != Self.resting {
                self.startWaiting()
                continue
            }
            guard Syscall.futexWait(self.futex, whileHolding: word, untilMonotonic: deadline) else { break }
        }
        _ = self.state.loadThenBitwiseAnd(with: ~Self.resting, ordering: .sequentiallyConsistent)
    }

    /// Whether the loop is resting now (tests).
    var isResting: Bool { self.state.load(ordering: .sequentiallyConsistent) & Self.resting != 0 }

    /// A stream's start for the loop (on the acceptor's thread): a resting loop wakes for it
    /// unless its rest ends within ``longestStartWait``. The caller also hands the loop a task
    /// that calls ``startWaiting()``.
    func deliver(_ start: @escaping @Sendable () -> Void) {
        let before = self.lock.withLock {
            self.waiting.append(start)
            return self.state.loadThenWrappingIncrement(ordering: .sequentiallyConsistent)
        }
        guard before & Self.resting != 0 else { return }
        if !self.busy.load(ordering: .relaxed) || self.restDeadline.load(ordering: .sequentiallyConsistent) > Syscall.monotonicNanoseconds() + self.longestStartWait {
            Syscall.futexWake(self.futex)
        }
    }

    /// A tick of the loop ended at `ended` (on the loop's thread): at least `window` after the
    /// current window of the busy estimate began, that window ends.
    func tickEnded(at ended: UInt64, window: UInt64) {
        guard ended &- self.windowStarted >= window else { return }
        self.windowEnded(relayed: self.relayed &- self.relayedBefore, window: ended &- self.windowStarted)
        self.windowStarted = ended
        self.relayedBefore = self.relayed
    }

    /// The loop's own view of its last window, `window` nanoseconds long (on the loop's thread).
    private func windowEnded(relayed events: Int, window: UInt64) {
        let busy = UInt64(events) * 1_000_000 >= UInt64(Self.busyEventsPerMillisecond) * window
        if busy != self.busy.load(ordering: .relaxed) { self.busy.store(busy, ordering: .relaxed) }
    }

    /// Starts the streams waiting in the gate (on the loop's thread).
    func startWaiting() {
        let starts: [@Sendable () -> Void] = self.lock.withLock {
            guard !self.waiting.isEmpty else { return [] }
            self.state.wrappingDecrement(by: UInt32(self.waiting.count), ordering: .sequentiallyConsistent)
            defer { self.waiting.removeAll(keepingCapacity: true) }
            return self.waiting
        }
        for start in starts { start() }
    }
}

/// Applies ``LoopBatching`` to every loop of a group: NIO calls it on the loop's own thread
/// after each tick, just before the loop waits again.
final class LoopBatcher: NIOEventLoopMetricsDelegate, Sendable {
    /// One loop's gate and rests. Touched only by that loop's thread.
    private final class LoopClock: @unchecked Sendable {
        let gate: RestGate
        var schedule: RestSchedule

        init(gate: RestGate, batching: LoopBatching) {
            self.gate = gate
            self.schedule = RestSchedule(batching)
        }
    }

    let batching: LoopBatching
    private let clocks = ThreadSpecificVariable<LoopClock>()
    private let gates = NIOLockedValueBox([ObjectIdentifier: RestGate]())

    init(window: Duration) {
        self.batching = LoopBatching(window: window)
    }

    /// The gate new streams for `loop` go through.
    func gate(for loop: any EventLoop) -> RestGate {
        self.gate(forLoop: ObjectIdentifier(loop))
    }

    private func gate(forLoop id: ObjectIdentifier) -> RestGate {
        self.gates.withLockedValue { gates in
            if let gate = gates[id] { return gate }
            let gate = RestGate(longestStartWait: self.batching.longestStartWait)
            gates[id] = gate
            return gate
        }
    }

    func processedTick(info: NIOEventLoopTickInfo) {
        let clock: LoopClock
        if let existing = self.clocks.currentValue {
            clock = existing
        } else {
            clock = LoopClock(gate: self.gate(forLoop: info.eventLoopID), batching: self.batching)
            self.clocks.currentValue = clock
        }
        let ended = Syscall.monotonicNanoseconds()
        clock.gate.tickEnded(at: ended, window: self.batching.window)
        clock.schedule.passEnded(at: ended) { clock.gate.rest(nanoseconds: $0) }
    }
}
