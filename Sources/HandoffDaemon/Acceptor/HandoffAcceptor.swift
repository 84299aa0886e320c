import Atomics
import Foundation
import HandoffWire
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Receives handoffs on a dedicated thread with its own epoll.
///
/// SwiftNIO cannot accept on `SOCK_SEQPACKET` nor receive passed descriptors (it reads with
/// `read(2)`, which drops them), so this thread does the Unix side: `accept4`, `recvmsg` with
/// `MSG_CMSG_CLOEXEC`, inspection, and hands each client descriptor to ``StreamLauncher``.
/// Nothing on this thread blocks: every socket is non-blocking and waits are epoll timeouts.
///
/// It stops accepting before the open-file limit would make the kernel drop passed
/// descriptors (`MSG_CTRUNC`); the listen backlog holds new handoffs meanwhile.
// @unchecked Sendable: the mutable state below is touched only on the acceptor thread, after
// `start()`; other threads call only `stop()` and `waitUntilStopped()`, which use the atomic
// flag, the eventfd and the lock.
final class HandoffAcceptor: @unchecked Sendable {
    private let listener: SeqpacketListener
    private let receiver: HandoffReceiver
    private let configuration: DaemonConfiguration
    private let capacity: StreamCapacity
    private let metrics: DaemonMetrics
    private let logger: Logger
    private let dispatch: (HandoffDisposition) -> Void

    private let wake: OwnedDescriptor
    private let stopRequested = ManagedAtomic(false)
    private let leavesBacklog = ManagedAtomic(false)
    private let running = ManagedAtomic(false)
    private let finished = NIOLockedValueBox<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    // Acceptor-thread state.
    private var pending: [CInt: PendingConnection] = [:]
    private var deadlines = CircularBuffer<(fd: CInt, serial: UInt64, deadline: NIODeadline)>()
    private var nextSerial: UInt64 = 0
    private var acceptingPaused = false
    /// Set after `accept4` failed for want of descriptors (`EMFILE`/`ENFILE`): accepting rests
    /// until then instead of spinning on a listener that stays readable.
    private var acceptRestingUntil: NIODeadline?
    private var outOfDescriptorsReported = false
    private static let acceptRest = TimeAmount.milliseconds(50)

    /// An accepted connection whose record has not arrived yet. The serial tells it apart from
    /// a later connection that reuses its descriptor number.
    private struct PendingConnection {
        var connection: OwnedDescriptor
        var wantsAck: Bool
        var serial: UInt64
    }

    private static let listenerToken: UInt64 = 0
    private static let wakeToken: UInt64 = 1
    private static let connectionTokenBase: UInt64 = 2
    private static let acceptBurst = 128

    init(
        listener: SeqpacketListener,
        configuration: DaemonConfiguration,
        capacity: StreamCapacity,
        metrics: DaemonMetrics,
        logger: Logger,
        dispatch: @escaping (HandoffDisposition) -> Void
    ) throws {
        self.listener = listener
        self.receiver = HandoffReceiver(maximumPayloadBytes: configuration.limits.maxHandoffBytes)
        self.configuration = configuration
        self.capacity = capacity
        self.metrics = metrics
        self.logger = logger
        self.dispatch = dispatch
        self.wake = OwnedDescriptor(taking: try Syscall.eventfd())
    }

    /// Starts the acceptor thread.
    func start() {
        let thread = Thread { [self] in
            Syscall.nameCurrentThread("handoffd-accept")
            self.runLoop()
            let waiters = self.finished.withLockedValue { state in
                state.done = true
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
        thread.start()
    }

    /// Asks the thread to stop: it stops taking new connections, receives the handoffs already
    /// queued, and exits.
    func stop() {
        self.stopRequested.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { try? Syscall.write(self.wake.rawValue, $0) }
    }

    /// At stop, leave queued handoffs to a successor that shares the socket, and never unlink
    /// the path: it is the successor's now. Call before ``stop()``.
    func leaveBacklogToSuccessor() {
        self.leavesBacklog.store(true, ordering: .releasing)
    }

    /// Whether the thread is in its accept loop.
    var isRunning: Bool { self.running.load(ordering: .acquiring) }

    /// Returns when the thread has exited.
    func waitUntilStopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = self.finished.withLockedValue { state in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    // MARK: Loop

    private func runLoop() {
        let epoll: Epoll
        do {
            epoll = try Epoll()
            try epoll.add(self.listener.rawDescriptor, events: .readable, token: Self.listenerToken)
            try epoll.add(self.wake.rawValue, events: .readable, token: Self.wakeToken)
        } catch {
            self.logger.critical("handoff acceptor cannot start", metadata: ["error": "\(error)"])
            return
        }
        self.running.store(true, ordering: .releasing)
        defer { self.running.store(false, ordering: .releasing) }
        while !self.stopRequested.load(ordering: .acquiring) {
            do {
                try epoll.wait(timeoutMilliseconds: self.nextTimeoutMilliseconds()) { token, _ in
                    switch token {
                    case Self.listenerToken: self.acceptBurst(epoll: epoll)
                    case Self.wakeToken: self.drainWake()
                    default: self.receive(fd: CInt(token - Self.connectionTokenBase), epoll: epoll)
                    }
                }
            } catch {
                self.logger.error("handoff acceptor wait failed", metadata: ["error": "\(error)"])
            }
            self.expireDeadlines(epoll: epoll)
            self.updateAccepting(epoll: epoll)
        }
        self.finishStopping(epoll: epoll)
        self.wake.closeIfOpen()
    }

    private func nextTimeoutMilliseconds() -> Int {
        var timeout = -1
        if let first = self.deadlines.first {
            let remaining = first.deadline - .now()
            timeout = max(0, Int(remaining.nanoseconds / 1_000_000) + 1)
        }
        if self.acceptingPaused { timeout = timeout < 0 ? 10 : min(timeout, 10) }
        return timeout
    }

    private func drainWake() {
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { try? Syscall.read(self.wake.rawValue, into: $0) }
    }

    // MARK: Accept

    /// Room for one more Unix connection and the client descriptor it will bring.
    private var hasDescriptorRoom: Bool {
        self.capacity.hasRoomForDescriptors(2 * (self.pending.count + 1))
    }

    private func acceptBurst(epoll: Epoll) {
        for _ in 0..<Self.acceptBurst {
            guard self.hasDescriptorRoom, self.acceptRestingUntil == nil else { return }
            let accepted: (connection: OwnedDescriptor, wantsAck: Bool)
            do {
                guard let connection = try self.listener.acceptConnection() else { return }
                accepted = connection
                self.outOfDescriptorsReported = false
            } catch let error as HandoffWireError where error.errno == ECONNABORTED {
                continue
            } catch let error as HandoffWireError where error.errno == EMFILE || error.errno == ENFILE {
                // Out of descriptors: the connection stays in the backlog. Rest instead of
                // spinning on a listener that stays readable; say so once per episode.
                self.acceptRestingUntil = .now() + Self.acceptRest
                self.metrics.handoffError(HandoffRejection.outOfDescriptors.rawValue)
                if !self.outOfDescriptorsReported {
                    self.outOfDescriptorsReported = true
                    self.logger.warning("accept4 ran out of descriptors; accepting rests until it works again", metadata: ["error": "\(error)"])
                }
                return
            } catch {
                self.logger.error("accepting a handoff connection failed", metadata: ["error": "\(error)"])
                return
            }
            if !self.configuration.listener.allowedPeerUIDs.isEmpty, !self.peerIsAllowed(accepted.connection) {
                accepted.connection.closeIfOpen()
                self.metrics.handoffError(HandoffRejection.peerNotAllowed.rawValue)
                continue
            }
            self.receiveFirst(accepted.connection, wantsAck: accepted.wantsAck, epoll: epoll)
        }
    }

    private func peerIsAllowed(_ connection: OwnedDescriptor) -> Bool {
        guard let credentials = try? Syscall.peerCredentials(connection.rawValue) else { return false }
        return self.configuration.listener.allowedPeerUIDs.contains(credentials.uid)
    }

    /// The module sends right after connecting, so the record is usually there already or
    /// within microseconds: for a sender waiting for its acknowledgement (an Apache worker),
    /// look again for a moment before paying for an epoll round, which would cost it two
    /// wake-ups of this thread. A sender that does not wait is not worth the spin.
    private static let recordSpin = TimeAmount.microseconds(30)

    private func receiveFirst(_ connection: OwnedDescriptor, wantsAck: Bool, epoll: Epoll) {
        let fd = connection.rawValue
        var outcome = self.receiveOutcome(fd)
        if wantsAck, case .some(.wouldBlock) = outcome {
            let until = NIODeadline.now() + Self.recordSpin
            while case .some(.wouldBlock) = outcome, NIODeadline.now() < until {
                outcome = self.receiveOutcome(fd)
            }
        }
        switch outcome {
        case .some(.wouldBlock):
            do {
                try epoll.add(fd, events: [.readable, .readHangup], token: Self.connectionTokenBase + UInt64(fd))
            } catch {
                connection.closeIfOpen()
                self.metrics.handoffError(HandoffRejection.receiveFailed.rawValue)
                return
            }
            self.nextSerial &+= 1
            self.pending[fd] = PendingConnection(connection: connection, wantsAck: wantsAck, serial: self.nextSerial)
            self.deadlines.append((fd, self.nextSerial, NIODeadline.now() + TimeAmount(self.configuration.timeouts.handoff)))
        case .some(let outcome):
            self.handle(outcome, on: connection, wantsAck: wantsAck)
        case .none:
            connection.closeIfOpen()
        }
    }

    private func receive(fd: CInt, epoll: Epoll) {
        guard self.pending[fd] != nil else { return }
        let outcome = self.receiveOutcome(fd)
        if case .some(.wouldBlock) = outcome { return }
        guard let entry = self.forget(fd, epoll: epoll) else { return }
        if let outcome {
            self.handle(outcome, on: entry.connection, wantsAck: entry.wantsAck)
        } else {
            entry.connection.closeIfOpen()
        }
    }

    /// One receive attempt; `nil` when it failed (already counted).
    private func receiveOutcome(_ fd: CInt) -> HandoffReceiver.Outcome? {
        do {
            return try self.receiver.receive(from: fd)
        } catch {
            self.logger.debug("receiving a handoff failed", metadata: ["error": "\(error)"])
            self.metrics.handoffError(HandoffRejection.receiveFailed.rawValue)
            return nil
        }
    }

    /// Inspects what arrived, answers the sender when it asked for an acknowledgement, closes
    /// the Unix connection and passes the client on.
    private func handle(_ outcome: HandoffReceiver.Outcome, on connection: OwnedDescriptor, wantsAck: Bool) {
        defer { connection.closeIfOpen() }
        switch outcome {
        case .wouldBlock:
            return
        case .endOfStream:
            self.metrics.handoffError(HandoffRejection.emptyConnection.rawValue)
        case .record(let record):
            let disposition = HandoffInspection.inspect(record)
            if case .dropped(let rejection) = disposition {
                self.metrics.handoffError(rejection.rawValue)
                self.logger.debug("handoff dropped", metadata: ["reason": "\(rejection.rawValue)"])
            }
            switch HandoffAck.reply(wantsAck: wantsAck, disposition: disposition) {
            case .none:
                self.dispatch(disposition)
            case .refuse:
                _ = HandoffAck.send(HandoffAck.refused, on: connection)
                self.dispatch(disposition)
            case .acknowledgeThenServe:
                guard HandoffAck.send(HandoffAck.acknowledged, on: connection) else {
                    // The sender gave up before our ack could reach it and answers the client
                    // itself: close our copy without writing a byte.
                    disposition.abandon()
                    self.metrics.handoffError(HandoffRejection.abandonedBySender.rawValue)
                    self.logger.debug("handoff abandoned: the sender stopped waiting for the ack")
                    return
                }
                self.dispatch(disposition)
            }
        }
    }

    /// Sends the one-byte answer; whether it went out.
    private func forget(_ fd: CInt, epoll: Epoll) -> PendingConnection? {
        guard let entry = self.pending.removeValue(forKey: fd) else { return nil }
        try? epoll.remove(fd)
        return entry
    }

    private func expireDeadlines(epoll: Epoll) {
        let now = NIODeadline.now()
        while let first = self.deadlines.first, first.deadline <= now {
            self.deadlines.removeFirst()
            // A connection that already delivered is gone from `pending`, and its number may
            // belong to a newer connection by now: only the same serial expires.
            guard self.pending[first.fd]?.serial == first.serial, let entry = self.forget(first.fd, epoll: epoll) else { continue }
            entry.connection.closeIfOpen()
            self.metrics.handoffError(HandoffRejection.timeout.rawValue)
        }
        // Drop stale entries at the front so the next timeout is accurate.
        while let first = self.deadlines.first, self.pending[first.fd]?.serial != first.serial {
            self.deadlines.removeFirst()
        }
    }

    private func updateAccepting(epoll: Epoll) {
        if let resting = self.acceptRestingUntil, resting <= .now() { self.acceptRestingUntil = nil }
        let room = self.hasDescriptorRoom && self.acceptRestingUntil == nil
        if self.acceptingPaused, room {
            self.acceptingPaused = false
            try? epoll.modify(self.listener.rawDescriptor, events: .readable, token: Self.listenerToken)
        } else if !self.acceptingPaused, !room {
            self.acceptingPaused = true
            try? epoll.modify(self.listener.rawDescriptor, events: [], token: Self.listenerToken)
            if self.acceptRestingUntil == nil {
                self.logger.warning(
                    "open-file limit reached: accepting paused until streams end",
                    metadata: ["client_fds": "\(self.capacity.heldClientDescriptors)"]
                )
            }
        }
    }

    // MARK: Stop

    /// Unlinks the path so new connections go elsewhere (or retry), takes what already sits in
    /// the backlog, finishes receiving on accepted connections, then closes the listener.
    private func finishStopping(epoll: Epoll) {
        let successorTakesOver = self.leavesBacklog.load(ordering: .acquiring)
        if !successorTakesOver, self.listener.ownsPath || self.configuration.listener.drainsInheritedBacklog {
            self.listener.unlinkPathIfOwned()
            // A connect that resolved the path just before the unlink lands in the backlog now.
            usleep(10_000)
            while self.hasDescriptorRoom, let accepted = try? self.listener.acceptConnection() {
                self.receiveFirst(accepted.connection, wantsAck: accepted.wantsAck, epoll: epoll)
            }
        }
        try? epoll.remove(self.listener.rawDescriptor)
        self.listener.close()
        while !self.pending.isEmpty {
            try? epoll.wait(timeoutMilliseconds: self.nextTimeoutMilliseconds()) { token, _ in
                if token >= Self.connectionTokenBase {
                    self.receive(fd: CInt(token - Self.connectionTokenBase), epoll: epoll)
                }
            }
            self.expireDeadlines(epoll: epoll)
        }
    }
}
