import Atomics
import Foundation
import HandoffWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Tells each event loop when one of its client sockets has something to say: the client sent
/// bytes, closed, reset, or made room for more of our writes.
///
/// Client connections are not NIO channels: a channel (with its pipeline, contexts, promises
/// and write queue) costs ~2.4 KB per stream, a ``ClientConnection`` a few hundred bytes. The
/// price is this one thread with its own edge-triggered epoll. Events are rare (a stream that
/// ends normally produces one, its client's close), so they are batched per loop and handed
/// over with one `execute` per batch. Under load the watcher batches its wake-ups as the loops
/// do (``LoopBatching``): woken again within a window, it sleeps out the rest of it first, so
/// a client's close or room for more output is seen at most a window late, and a thousand
/// closes a second cost a few hundred wakes of this thread and of the loops, not a thousand.
///
/// Tokens carry (fd, loop index, generation); a loop ignores events whose generation no longer
/// matches the connection in that slot, so a reused descriptor number is never confused.
// @unchecked Sendable: `epoll` and `wake` are used for epoll_ctl (thread-safe syscalls) from
// the loops and for waiting only on the watcher thread; the rest is immutable or atomic.
final class ClientWatcher: @unchecked Sendable {
    private let epoll: Epoll
    private let wake: OwnedDescriptor
    private let tables: [ClientTable]
    private let batching: LoopBatching?
    private let started = ManagedAtomic(false)
    private let stopping = ManagedAtomic(false)
    /// Set by the thread as it ends, so ``stop()`` closes the wake descriptor only then.
    private let finished = ConditionLock(value: false)
    /// Times the thread came back from waiting (tests).
    let wakes = ManagedAtomic(0)
    private let logger: Logger

    /// `batching`: the loops' window, applied to the watcher's own wake-ups (nil: none).
    init(tables: [ClientTable], batching: LoopBatching?, logger: Logger) throws {
        self.epoll = try Epoll(capacity: 256)
        self.wake = OwnedDescriptor(taking: try Syscall.eventfd())
        self.tables = tables
        self.batching = batching
        self.logger = logger
        try self.epoll.add(self.wake.rawValue, events: .readable, token: UInt64.max)
    }

    /// Edge-triggered interest: input/close/reset always, output space when asked.
    static func events(wantWritable: Bool) -> Epoll.Events {
        var events: Epoll.Events = [.readable, .readHangup, .edgeTriggered]
        if wantWritable { events.insert(.writable) }
        return events
    }

    static func token(fd: CInt, loop: Int, generation: UInt32) -> UInt64 {
        UInt64(UInt32(bitPattern: fd)) | UInt64(loop) << 32 | UInt64(generation & 0xFF_FFFF) << 40
    }

    func register(fd: CInt, loop: Int, generation: UInt32) throws {
        try self.epoll.add(fd, events: Self.events(wantWritable: false), token: Self.token(fd: fd, loop: loop, generation: generation))
    }

    func modify(fd: CInt, loop: Int, generation: UInt32, wantWritable: Bool) throws {
        try self.epoll.modify(fd, events: Self.events(wantWritable: wantWritable), token: Self.token(fd: fd, loop: loop, generation: generation))
    }

    /// Starts the watcher thread.
    func start() {
        self.started.store(true, ordering: .releasing)
        let thread = Thread { [self] in
            Syscall.nameCurrentThread("handoffd-client")
            self.run()
            self.finished.lock()
            self.finished.unlock(withValue: true)
        }
        thread.start()
    }

    /// Stops the thread (after the loops stopped using it) and returns once it has ended, then
    /// closes the wake descriptor (which the thread's end no longer races).
    func stop() {
        guard self.started.exchange(false, ordering: .acquiringAndReleasing) else {
            self.wake.closeIfOpen()
            return
        }
        self.stopping.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { try? Syscall.write(self.wake.rawValue, $0) }
        self.finished.lock(whenValue: true)
        self.finished.unlock()
        self.wake.closeIfOpen()
    }

    private func run() {
        var batches = Array(repeating: [ClientTable.Event](), count: self.tables.count)
        var schedule = self.batching.map(RestSchedule.init)
        while !self.stopping.load(ordering: .acquiring) {
            do {
                try self.epoll.wait(timeoutMilliseconds: -1) { token, events in
                    guard token != UInt64.max else { return }
                    let loop = Int((token >> 32) & 0xFF)
                    guard loop < batches.count else { return }
                    batches[loop].append(
                        ClientTable.Event(fd: CInt(bitPattern: UInt32(token & 0xFFFF_FFFF)), generation: UInt32(token >> 40), events: events)
                    )
                }
            } catch {
                self.logger.error("client watcher wait failed", metadata: ["error": "\(error)"])
            }
            self.wakes.wrappingIncrement(ordering: .relaxed)
            for index in batches.indices where !batches[index].isEmpty {
                self.tables[index].deliver(batches[index])
                batches[index].removeAll(keepingCapacity: true)
            }
            schedule?.passEnded(at: Syscall.monotonicNanoseconds()) { Syscall.sleep(nanoseconds: $0) }
        }
    }
}
