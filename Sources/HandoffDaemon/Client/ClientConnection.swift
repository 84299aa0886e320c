import HandoffWire
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// What a ``ClientConnection`` reports to its owner, on the connection's loop.
protocol ClientConnectionDelegate: AnyObject {
    /// Waiting bytes were sent because the socket became writable (look at ``ClientConnection/pendingBytes``).
    func connectionSentWaitingBytes()
    /// The client closed, reset, or a write failed. The connection is closed now.
    func connectionClosed()
}

/// A client socket owned by the daemon, written from its event loop with plain `send`.
///
/// Writes go straight to the kernel; what it does not take waits in one buffer, and the
/// watcher reports when there is room again. Reads only look for the end: whatever the client
/// sends is discarded. Loop-bound.
final class ClientConnection {
    let fd: CInt
    let generation: UInt32
    private let table: ClientTable
    private let watcher: ClientWatcher
    // Strong: the connection keeps its session alive while open; closing breaks the cycle.
    private var delegate: (any ClientConnectionDelegate)?
    private var pending: ByteBuffer?
    private var wantsWritable = false
    private(set) var isClosed = false
    private var outputShut = false

    /// Bytes waiting for the kernel above which the owner should pause its source.
    static let highWaterMark = 32 * 1024

    /// Takes ownership of `fd` (a connected stream socket) and registers it with the watcher.
    init(fd: CInt, table: ClientTable, watcher: ClientWatcher) throws {
        self.fd = fd
        self.table = table
        self.watcher = watcher
        self.generation = table.takeGeneration()
        try Syscall.setNonBlocking(fd)
        try watcher.register(fd: fd, loop: table.index, generation: self.generation)
        table.insert(self)
    }

    /// The owner, kept until the connection closes.
    func setDelegate(_ delegate: any ClientConnectionDelegate) {
        self.delegate = delegate
    }

    /// Whether the owner may write more without growing the buffer past the high-water mark.
    var isWritable: Bool { (self.pending?.readableBytes ?? 0) < Self.highWaterMark }

    /// Whether bytes wait for the kernel.
    var hasPendingWrites: Bool { (self.pending?.readableBytes ?? 0) > 0 }

    /// Bytes waiting for the kernel.
    var pendingBytes: Int { self.pending?.readableBytes ?? 0 }

    /// Bytes the kernel has taken so far.
    private(set) var sentBytes = 0

    /// Queues `buffer` without sending it yet (a head that should leave with the first event).
    func enqueue(_ buffer: ByteBuffer) {
        guard !self.isClosed, !self.outputShut else { return }
        if self.pending == nil || self.pending!.readableBytes == 0 {
            self.pending = buffer
        } else {
            var copy = buffer
            self.pending!.writeBuffer(&copy)
        }
    }

    /// Sends `buffer` (after anything queued). Returns `false` if the connection is closed.
    @discardableResult
    func write(_ buffer: ByteBuffer) -> Bool {
        guard !self.isClosed, !self.outputShut else { return false }
        if let pending = self.pending, pending.readableBytes > 0 {
            self.enqueue(buffer)
            return self.flush()
        }
        // Fast path: nothing waits, send straight from the caller's buffer.
        var buffer = buffer
        switch self.send(&buffer) {
        case .failed:
            self.closeNow()
            return false
        case .complete:
            return true
        case .partial:
            self.pending = buffer
            self.wantWritable(true)
            return true
        }
    }

    /// Sends what waits. Returns `false` if the connection is closed.
    @discardableResult
    func flush() -> Bool {
        guard !self.isClosed, var pending = self.pending, pending.readableBytes > 0 else { return !self.isClosed }
        let outcome = self.send(&pending)
        switch outcome {
        case .failed:
            self.pending = nil
            self.closeNow()
            return false
        case .complete:
            self.pending = nil
            self.wantWritable(false)
        case .partial:
            self.pending = pending
            self.wantWritable(true)
        }
        return true
    }

    private enum SendOutcome {
        case complete, partial, failed
    }

    private func send(_ buffer: inout ByteBuffer) -> SendOutcome {
        while buffer.readableBytes > 0 {
            do {
                guard let sent = try buffer.withUnsafeReadableBytes({ try Syscall.send(self.fd, $0) }) else { return .partial }
                buffer.moveReaderIndex(forwardBy: sent)
                self.sentBytes += sent
            } catch {
                return .failed
            }
        }
        return .complete
    }

    private func wantWritable(_ wanted: Bool) {
        guard wanted != self.wantsWritable, !self.isClosed else { return }
        self.wantsWritable = wanted
        try? self.watcher.modify(fd: self.fd, loop: self.table.index, generation: self.generation, wantWritable: wanted)
    }

    /// Shuts down the write side (after the last bytes reached the kernel), so the client sees
    /// the end of the response; reading goes on until the client closes.
    func shutdownOutput() {
        guard !self.isClosed, !self.outputShut else { return }
        self.outputShut = true
        do {
            try Syscall.shutdown(self.fd, how: Int32(SHUT_WR))
        } catch {
            self.closeNow()
        }
    }

    /// Closes at once. The delegate hears `connectionClosed` only for closes it did not ask for.
    func close() {
        guard !self.isClosed else { return }
        self.delegate = nil
        self.closeNow()
    }

    private func closeNow() {
        guard !self.isClosed else { return }
        self.isClosed = true
        self.pending = nil
        self.table.remove(self)
        // No EPOLL_CTL_DEL: this is the descriptor's only reference (Apache pointed its copy
        // elsewhere), so closing it leaves the epoll set; a late event finds no generation.
        try? Syscall.close(self.fd)
        let delegate = self.delegate
        self.delegate = nil
        delegate?.connectionClosed()
    }

    /// Watcher events, on the loop.
    func handle(_ events: Epoll.Events) {
        guard !self.isClosed else { return }
        if events.contains(.writable) || events.contains(.error) {
            if self.hasPendingWrites {
                guard self.flush() else { return }
                self.delegate?.connectionSentWaitingBytes()
            }
        }
        guard !self.isClosed else { return }
        if events.contains(.readable) || events.contains(.readHangup) || events.contains(.hangup) || events.contains(.error) {
            self.drainInput()
        }
    }

    /// Reads and discards until the kernel has nothing more; the end of input (or an error)
    /// closes the connection.
    private func drainInput() {
        while !self.isClosed {
            let count: Int?
            do {
                count = try Syscall.read(self.fd, into: self.table.scratch)
            } catch {
                self.closeNow()  // reset, or another error
                return
            }
            guard let count else { return }  // nothing more for now
            if count == 0 {
                self.closeNow()  // the client closed
                return
            }
        }
    }
}
