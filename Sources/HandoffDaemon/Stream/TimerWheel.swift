import NIOCore

/// Something a ``TimerWheel`` calls back: an object with one timer, kept in a ``WheelTimer``.
protocol TimerWheelTarget: AnyObject {
    /// The target's timer (the wheel updates it when a long timer changes place).
    var wheelTimer: WheelTimer { get set }
    /// The timer scheduled as `token` is due; ignore it unless it is still the target's own
    /// (``WheelTimer/fired(_:)``).
    func timerFired(token: UInt32)
}

extension TimerWheelTarget {
    /// A timer longer than a turn changed place in the wheel: the target keeps the new place,
    /// so it can still cancel the timer.
    func timerMoved(to handle: TimerWheel.Handle) {
        self.wheelTimer.moved(to: handle)
    }
}

/// A hashed timing wheel for one event loop: millisecond ticks, O(1) scheduling and
/// cancelling.
///
/// Every stream has timers (the mock's next event, write progress, upstream idle). Scheduling
/// each on the event loop's own heap costs a retain-heavy heap update per timer; at 15 000
/// streams that was a quarter of the daemon's CPU. Here a timer is an entry appended to its
/// tick's bucket, and the loop runs one scheduled callback for the next tick with entries.
/// Cancelling lets go of the target at once and leaves a blank entry that its tick clears:
/// a finished stream is freed when it ends, not when its last timer would have been due
/// (at thousands of streams a second, two seconds of linger held ~10 MB of ended streams).
/// Loop-bound.
final class TimerWheel {
    /// Where a scheduled timer is, for ``cancel(_:)``; `serial` tells it from any later timer
    /// in the same place.
    struct Handle: Equatable {
        let slot: Int32
        let index: Int32
        let serial: UInt32
    }

    private struct Entry {
        /// nil once cancelled.
        var target: (any TimerWheelTarget)?
        let serial: UInt32
        var rounds: Int32
    }

    static let tickNanoseconds: UInt64 = 1_000_000
    /// Buckets per turn (4096: a turn is ~4 s; longer timers wait whole turns).
    let slotCount: Int

    private let eventLoop: any EventLoop
    private var buckets: [[Entry]]
    /// Scheduled timers not yet fired or cancelled.
    private(set) var entries = 0
    private var nextSerial: UInt32 = 0
    /// The bucket whose entries are being fired, and its slot: a timer cancelled meanwhile
    /// (say a source's, by the stream whose timer just fired) is blanked there.
    private var firing: [Entry] = []
    private var firingSlot = -1
    /// The last tick processed.
    private var currentTick: UInt64
    private var driver: NIOScheduledCallback?
    private var driverTick: UInt64 = .max

    init(eventLoop: any EventLoop, slotCount: Int = 4096) {
        self.eventLoop = eventLoop
        self.slotCount = slotCount
        self.buckets = Array(repeating: [], count: slotCount)
        self.currentTick = NIODeadline.now().uptimeNanoseconds / Self.tickNanoseconds
    }

    /// Calls `target.timerFired(token:)` with the handle's serial after `delay` (rounded up
    /// to the next millisecond).
    func schedule(_ target: any TimerWheelTarget, after delay: TimeAmount) -> Handle {
        let now = NIODeadline.now().uptimeNanoseconds
        let due = max(self.currentTick + 1, (now + UInt64(max(0, delay.nanoseconds)) + Self.tickNanoseconds - 1) / Self.tickNanoseconds)
        let distance = due - self.currentTick
        let slots = UInt64(self.slotCount)
        let slot = Int(due % slots)
        self.nextSerial &+= 1
        let handle = Handle(slot: Int32(slot), index: Int32(self.buckets[slot].count), serial: self.nextSerial)
        self.buckets[slot].append(Entry(target: target, serial: handle.serial, rounds: Int32((distance - 1) / slots)))
        self.entries += 1
        // The first time that bucket comes round (for a long timer, before its last round).
        let firstVisit = self.currentTick + (distance - 1) % slots + 1
        if firstVisit < self.driverTick { self.arm(at: firstVisit) }
        return handle
    }

    /// Forgets the timer at `handle` (if it has not fired) and lets go of its target now.
    func cancel(_ handle: Handle) {
        let slot = Int(handle.slot)
        let index = Int(handle.index)
        if index < self.buckets[slot].count, self.buckets[slot][index].serial == handle.serial {
            guard self.buckets[slot][index].target != nil else { return }
            self.buckets[slot][index].target = nil
            self.entries -= 1
            // Blank entries at the end go now; the others when their tick comes. A bucket
            // left empty lets go of its storage, or every bucket would keep the most it ever
            // held (streams cancel their linger timer within moments: ~2 MB over 4 096
            // buckets on each of two loops).
            while let last = self.buckets[slot].last, last.target == nil {
                self.buckets[slot].removeLast()
            }
            if self.buckets[slot].isEmpty { self.buckets[slot] = [] }
        } else if slot == self.firingSlot, index < self.firing.count, self.firing[index].serial == handle.serial,
                  self.firing[index].target != nil {
            self.firing[index].target = nil
            self.entries -= 1
        }
    }

    private func arm(at tick: UInt64) {
        self.driver?.cancel()
        self.driverTick = tick
        let handler = WheelDriver(wheel: NIOLoopBound(self, eventLoop: self.eventLoop))
        self.driver = try? self.eventLoop.scheduleCallback(at: NIODeadline.uptimeNanoseconds(tick * Self.tickNanoseconds), handler: handler)
    }

    /// Runs every tick up to now (each bucket once per turn, so rounds count down correctly even
    /// after a long stall), then arms for the next bucket with entries.
    fileprivate func advance() {
        self.driver = nil
        self.driverTick = .max
        let nowTick = NIODeadline.now().uptimeNanoseconds / Self.tickNanoseconds
        let slots = UInt64(self.slotCount)
        while self.currentTick < nowTick {
            self.currentTick += 1
            let index = Int(self.currentTick % slots)
            guard !self.buckets[index].isEmpty else { continue }
            swap(&self.firing, &self.buckets[index])
            self.firingSlot = index
            var position = 0
            while position < self.firing.count {
                var entry = self.firing[position]
                position += 1
                guard let target = entry.target else { continue }  // cancelled
                if entry.rounds > 0 {
                    entry.rounds -= 1
                    let handle = Handle(slot: Int32(index), index: Int32(self.buckets[index].count), serial: entry.serial)
                    self.buckets[index].append(entry)
                    target.timerMoved(to: handle)
                    continue
                }
                self.entries -= 1
                target.timerFired(token: entry.serial)
            }
            self.firing = []
            self.firingSlot = -1
        }
        // Timers scheduled while firing may have armed a later tick than an older bucket's.
        guard self.entries > 0 else { return }
        var tick = self.currentTick + 1
        while tick < min(self.driverTick, self.currentTick + slots + 1) {
            if !self.buckets[Int(tick % slots)].isEmpty {
                self.arm(at: tick)
                return
            }
            tick += 1
        }
    }
}

/// The wheel's one callback on its event loop.
private struct WheelDriver: NIOScheduledCallbackHandler, Sendable {
    let wheel: NIOLoopBound<TimerWheel>

    func handleScheduledCallback(eventLoop: some EventLoop) {
        self.wheel.value.advance()
    }
}

/// A target's one timer on a ``TimerWheel``: arming replaces the pending timer, cancelling
/// removes it; a firing counts only if it is the pending one.
struct WheelTimer {
    private(set) var handle: TimerWheel.Handle?

    /// Schedules `target`'s timer after `delay`, in place of the pending one.
    mutating func arm(_ target: some TimerWheelTarget, on wheel: TimerWheel, after delay: TimeAmount) {
        self.cancel(on: wheel)
        self.handle = wheel.schedule(target, after: delay)
    }

    mutating func cancel(on wheel: TimerWheel) {
        guard let handle = self.handle else { return }
        self.handle = nil
        wheel.cancel(handle)
    }

    /// Whether the firing `token` is the pending timer's (which then is no longer pending).
    mutating func fired(_ token: UInt32) -> Bool {
        guard self.handle?.serial == token else { return false }
        self.handle = nil
        return true
    }

    mutating func moved(to handle: TimerWheel.Handle) {
        if self.handle?.serial == handle.serial { self.handle = handle }
    }
}
