import Foundation
import NIOConcurrencyHelpers
import NIOCore
import HandoffWire

#if canImport(Glibc)
import Glibc
#endif

/// The access log's writer: event loops hand it finished lines, and a thread of its own
/// writes them out in batches, so a slow or blocked log destination never stalls a stream.
/// The thread wakes every ``flushInterval`` (or sooner when ``wakeBytes`` wait), never once
/// per line: at thousands of streams a second, a wake-up per line costs the loops CPU.
///
/// Memory is bounded: past ``maximumBufferedBytes`` waiting to be written, lines are dropped
/// and counted (reported in the next line that gets through) rather than buffered without end.
// @unchecked Sendable: `pending`, `dropped` and `stopping` are guarded by `condition`; the
// descriptor is written only by the writer thread.
final class AccessLog: @unchecked Sendable {
    /// Lines waiting beyond this many bytes are dropped.
    static let maximumBufferedBytes = 4 << 20
    /// How long a line may wait before it is written.
    static let flushInterval = 0.05
    /// Waiting bytes that wake the writer before the interval is up.
    static let wakeBytes = 256 << 10

    private let descriptor: CInt
    private let condition = ConditionLock(value: false)
    private var pending: [UInt8] = []
    private var dropped = 0
    private var stopping = false
    private let finished = ConditionLock(value: false)

    /// Writes to `descriptor` (standard error by default), which the caller keeps open.
    init(descriptor: CInt = 2) {
        self.descriptor = descriptor
    }

    /// Starts the writer thread.
    func start() {
        let thread = Thread { [self] in
            Syscall.nameCurrentThread("handoffd-log")
            self.run()
            self.finished.lock()
            self.finished.unlock(withValue: true)
        }
        thread.start()
    }

    /// Queues one line (without its newline). Called on event loops; never blocks on I/O.
    func record(_ line: String) {
        self.record(ByteBuffer(string: line))
    }

    /// Queues one line's bytes (without its newline).
    func record(_ line: ByteBuffer) {
        self.condition.lock()
        if self.pending.count + line.readableBytes + 1 > Self.maximumBufferedBytes {
            self.dropped += 1
            self.condition.unlock(withValue: true)
            return
        }
        if self.dropped > 0 {
            self.pending.append(contentsOf: "access log: \(self.dropped) line(s) dropped: the destination was too slow\n".utf8)
            self.dropped = 0
        }
        self.pending.append(contentsOf: line.readableBytesView)
        self.pending.append(0x0A)
        if self.pending.count >= Self.wakeBytes {
            self.condition.unlock(withValue: true)
        } else {
            // A plain unlock: `unlock(withValue:)` broadcasts the condition, which would wake
            // the writer once per line even though it then finds nothing it must do yet.
            self.condition.unlock()
        }
    }

    /// Writes what is queued and stops the thread; returns when it has.
    func stop() {
        self.condition.lock()
        self.stopping = true
        self.condition.unlock(withValue: true)
        self.finished.lock(whenValue: true)
        self.finished.unlock()
    }

    private func run() {
        var batch: [UInt8] = []
        while true {
            // Woken early by a full batch or a stop; otherwise at the interval, for what waits.
            if !self.condition.lock(whenValue: true, timeoutSeconds: Self.flushInterval) {
                self.condition.lock()
            }
            swap(&batch, &self.pending)
            let stop = self.stopping
            self.condition.unlock(withValue: false)
            self.write(batch)
            batch.removeAll(keepingCapacity: batch.capacity <= 1 << 20)
            if stop {
                self.condition.lock()
                swap(&batch, &self.pending)
                self.condition.unlock(withValue: false)
                self.write(batch)
                return
            }
        }
    }

    private func write(_ bytes: [UInt8]) {
        var offset = 0
        bytes.withUnsafeBytes { raw in
            while offset < raw.count {
                let written = Glibc.write(self.descriptor, raw.baseAddress! + offset, raw.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0, errno == EINTR {
                    continue
                } else {
                    return  // nowhere to report a broken log destination; the lines are lost
                }
            }
        }
    }
}
