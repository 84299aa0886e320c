import NIOCore

/// Something a ``TimerWheel`` calls back. The token lets it ignore timers it has since
/// cancelled or replaced (cancelling is just moving on to a new token).
protocol TimerWheelTarget: AnyObject {
    func timerFired(token: UInt32)
}

/// A hashed timing wheel for one event loop: millisecond ticks, O(1) scheduling, no removal.
///
/// Every stream has timers (the mock's next event, write progress, upstream idle). Scheduling
/// each on the event loop's own heap costs a retain-heavy heap update per timer; at 15 000
/// streams that was a quarter of the daemon's CPU. Here a timer is an entry appended to its
/// tick's bucket, and the loop runs one scheduled callback for the next tick with entries.
/// Cancelling bumps the owner's token; stale entries are skipped when their tick comes.
/// Loop-bound.
final class TimerWheel {
    private struct Entry {
        let target: any TimerWheelTarget
        let token: UInt32
        var rounds: Int32
    }

    static let tickNanoseconds: UInt64 = 1_000_000
    /// Buckets per turn (4096: a turn is ~4 s; longer timers wait whole turns).
    let slotCount: Int

    private let eventLoop: any EventLoop
    private var buckets: [[Entry]]
    private var entries = 0
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

    /// Calls `target.timerFired(token:)` after `delay` (rounded up to the next millisecond).
    func schedule(_ target: any TimerWheelTarget, token: UInt32, after delay: TimeAmount) {
        let now = NIODeadline.now().uptimeNanoseconds
        let due = max(self.currentTick + 1, (now + UInt64(max(0, delay.nanoseconds)) + Self.tickNanoseconds - 1) / Self.tickNanoseconds)
        let distance = due - self.currentTick
        let slots = UInt64(self.slotCount)
        self.buckets[Int(due % slots)].append(Entry(target: target, token: token, rounds: Int32((distance - 1) / slots)))
        self.entries += 1
        // The first time that bucket comes round (for a long timer, before its last round).
        let firstVisit = self.currentTick + (distance - 1) % slots + 1
        if firstVisit < self.driverTick { self.arm(at: firstVisit) }
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
            var bucket: [Entry] = []
            swap(&bucket, &self.buckets[index])
            for var entry in bucket {
                if entry.rounds > 0 {
                    entry.rounds -= 1
                    self.buckets[index].append(entry)
                    continue
                }
                self.entries -= 1
                entry.target.timerFired(token: entry.token)
            }
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
