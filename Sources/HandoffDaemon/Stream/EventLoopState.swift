import NIOCore

/// Everything one event loop keeps for its streams: its client connections, its running
/// streams (for shutdown) and its timer wheel. Touched only on that loop.
// @unchecked Sendable: members are loop-bound; other threads only read the immutable fields
// and hop to `eventLoop` (`clients.deliver`, `registry` via `execute`).
final class EventLoopState: @unchecked Sendable {
    let index: Int
    let eventLoop: any EventLoop
    let clients: ClientTable
    let registry: StreamRegistry
    let wheel: TimerWheel
    /// Starts new streams while the loop rests (``LoopBatching``); nil when the loop does not
    /// batch.
    let restGate: RestGate?
    /// Events and bytes sent since they were last added to the metrics.
    private var unreportedEvents = 0
    private var unreportedBytes = 0

    init(index: Int, eventLoop: any EventLoop, restGate: RestGate?) {
        self.index = index
        self.eventLoop = eventLoop
        self.restGate = restGate
        self.clients = ClientTable(eventLoop: eventLoop, index: index)
        self.registry = StreamRegistry(eventLoop: eventLoop)
        self.wheel = TimerWheel(eventLoop: eventLoop)
    }

    /// Runs a new stream's `start` on the loop: at once even while the loop rests (``RestGate``),
    /// and as a task too, which wakes the loop for what the start schedules.
    func startSoon(_ start: @escaping @Sendable () -> Void) {
        guard let gate = self.restGate else {
            self.eventLoop.execute(start)
            return
        }
        gate.deliver(start)
        self.eventLoop.execute { gate.startWaiting() }
    }

    /// Counts bytes sent to a client: added up here and passed to the metrics in batches, so
    /// an event costs no atomic operation (``reportSent(to:)``).
    func countSent(bytes: Int, events: Int = 0) {
        self.unreportedBytes += bytes
        self.unreportedEvents += events
        self.restGate?.relayed &+= events
    }

    /// Adds what was counted to the metrics; called when a stream ends, and by
    /// ``countSent(bytes:events:)``'s callers once 256 events are waiting.
    func reportSent(to metrics: DaemonMetrics, ifAtLeast events: Int = 0) {
        guard self.unreportedEvents >= events, self.unreportedEvents + self.unreportedBytes > 0 else { return }
        metrics.eventsSent.increment(by: self.unreportedEvents)
        metrics.bytesSent.increment(by: self.unreportedBytes)
        self.unreportedEvents = 0
        self.unreportedBytes = 0
    }
}
