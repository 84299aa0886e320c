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

    init(index: Int, eventLoop: any EventLoop) {
        self.index = index
        self.eventLoop = eventLoop
        self.clients = ClientTable(eventLoop: eventLoop, index: index)
        self.registry = StreamRegistry(eventLoop: eventLoop)
        self.wheel = TimerWheel(eventLoop: eventLoop)
    }
}
