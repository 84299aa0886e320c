import HandoffWire
import NIOCore

/// The client connections of one event loop, by descriptor number, so watcher events find
/// their connection. Loop-bound.
// @unchecked Sendable: `slots` and `nextGeneration` are touched only on `eventLoop`; the
// watcher only calls `deliver`, which hops there.
final class ClientTable: @unchecked Sendable {
    /// One watcher event.
    struct Event: Sendable {
        var fd: CInt
        var generation: UInt32
        var events: Epoll.Events
    }

    let eventLoop: any EventLoop
    /// This loop's index in the watcher's tokens.
    let index: Int
    private var slots: [ClientConnection?]
    private var nextGeneration: UInt32 = 1
    /// Read scratch space for discarding what clients send.
    var scratch: UnsafeMutableRawBufferPointer

    /// Slots the table starts with; it doubles as descriptor numbers grow, so an idle daemon
    /// with a large open-file limit does not pay for it up front.
    static let initialSlots = 1024

    init(eventLoop: any EventLoop, index: Int) {
        self.eventLoop = eventLoop
        self.index = index
        self.slots = Array(repeating: nil, count: Self.initialSlots)
        self.scratch = .allocate(byteCount: 4096, alignment: 16)
    }

    deinit {
        self.scratch.deallocate()
    }

    /// A fresh generation for a new connection.
    func takeGeneration() -> UInt32 {
        defer { self.nextGeneration = (self.nextGeneration + 1) & 0xFF_FFFF }
        return self.nextGeneration
    }

    func insert(_ connection: ClientConnection) {
        let fd = Int(connection.fd)
        if fd >= self.slots.count {
            let grown = max(fd + 1, 2 * self.slots.count)
            self.slots.append(contentsOf: repeatElement(nil, count: grown - self.slots.count))
        }
        self.slots[fd] = connection
    }

    func remove(_ connection: ClientConnection) {
        let fd = Int(connection.fd)
        if fd < self.slots.count, self.slots[fd] === connection { self.slots[fd] = nil }
    }

    /// Called on the watcher thread: hands a batch to this loop.
    func deliver(_ events: [Event]) {
        self.eventLoop.execute {
            for event in events {
                let fd = Int(event.fd)
                guard fd < self.slots.count, let connection = self.slots[fd], connection.generation == event.generation else { continue }
                connection.handle(event.events)
            }
        }
    }
}
