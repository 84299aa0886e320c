import HandoffWire

#if canImport(Glibc)
import Glibc
#endif

/// `handoff-exec`: receives handoffs on its own SEQPACKET socket (the same protocol as
/// `handoffd`, acknowledged handoff included) and runs a program per connection, concurrently,
/// with the client socket as its stdin and stdout and the handoff JSON in `HANDOFF_DATA` (or,
/// when large, only in the file `HANDOFF_DATA_FILE`).
///
/// One thread, one epoll set: the listener, connections whose record has not arrived yet, and
/// a self-pipe for signals (SIGCHLD reaps, SIGTERM/SIGINT drains). Children start with a clean
/// signal mask and nothing open but 0, 1 and 2 (every descriptor here is close-on-exec).
public final class ExecServer {
    private let configuration: ExecConfiguration
    private let log: (String) -> Void
    private var children: ChildTable
    private let receiver: HandoffReceiver
    private var pending: [CInt: Pending] = [:]
    private var nextSerial: UInt64 = 0
    private var draining = false
    private var drainDeadline: ContinuousClock.Instant?
    private var payloadDirectory: String?
    private var payloadFiles = 0

    private struct Pending {
        var connection: OwnedDescriptor
        var wantsAck: Bool
        var deadline: ContinuousClock.Instant
    }

    private static let listenerToken: UInt64 = 1
    private static let signalToken: UInt64 = 2
    private static let connectionTokenBase: UInt64 = 1 << 32

    public init(configuration: ExecConfiguration, log: @escaping (String) -> Void) {
        self.configuration = configuration
        self.log = log
        self.children = ChildTable(limit: configuration.maxChildren, timeout: configuration.childTimeout, killGrace: configuration.killGrace)
        self.receiver = HandoffReceiver(maximumPayloadBytes: configuration.maxPayloadBytes)
    }

    /// Serves until SIGTERM or SIGINT, then stops accepting, lets running children finish
    /// (up to the drain timeout) and returns. `ready` runs once the socket accepts.
    public func run(ready: () -> Void = {}) throws {
        let signals = try SignalPipe.install([SIGTERM, SIGINT, SIGCHLD])
        defer { SignalPipe.uninstall() }
        let listener = try SeqpacketListener.bind(path: self.configuration.socketPath, mode: self.configuration.socketMode, group: self.configuration.socketGroup)
        defer {
            _ = listener.unlinkPathIfOwned()
            listener.close()
        }
        let epoll = try Epoll()
        try epoll.add(listener.rawDescriptor, events: [.readable], token: Self.listenerToken)
        try epoll.add(signals.rawValue, events: [.readable], token: Self.signalToken)
        defer { self.removePayloadDirectory() }
        self.log("handoff-exec listening socket=\(self.configuration.socketPath) program=\(self.configuration.program) max_children=\(self.configuration.maxChildren)")
        ready()

        while true {
            try epoll.wait(timeoutMilliseconds: self.waitMilliseconds()) { token, _ in
                switch token {
                case Self.listenerToken:
                    if !self.draining { self.acceptAll(listener, epoll: epoll) }
                case Self.signalToken:
                    self.takeSignals(from: signals, listener: listener, epoll: epoll)
                default:
                    self.receive(fd: CInt(truncatingIfNeeded: token - Self.connectionTokenBase), epoll: epoll)
                }
            }
            self.reap()
            self.expire(epoll: epoll)
            if self.draining, self.children.count == 0, self.pending.isEmpty {
                self.log("handoff-exec stopped")
                return
            }
        }
    }

    // MARK: Handoffs

    private func acceptAll(_ listener: SeqpacketListener, epoll: Epoll) {
        while true {
            let accepted: (connection: OwnedDescriptor, wantsAck: Bool)?
            do {
                accepted = try listener.acceptConnection()
            } catch {
                self.log("accept failed: \(error)")
                return
            }
            guard let (connection, wantsAck) = accepted else { return }
            if !self.configuration.allowedPeerUIDs.isEmpty {
                guard let peer = try? Syscall.peerCredentials(connection.rawValue), self.configuration.allowedPeerUIDs.contains(peer.uid) else {
                    connection.closeIfOpen()
                    continue
                }
            }
            let fd = connection.rawValue
            self.pending[fd] = Pending(connection: connection, wantsAck: wantsAck, deadline: .now + self.configuration.handoffTimeout)
            do {
                try epoll.add(fd, events: [.readable, .readHangup], token: Self.connectionTokenBase + UInt64(fd))
            } catch {
                self.pending[fd] = nil
                connection.closeIfOpen()
                continue
            }
            self.receive(fd: fd, epoll: epoll)
        }
    }

    private func receive(fd: CInt, epoll: Epoll) {
        guard let entry = self.pending[fd] else { return }
        let outcome: HandoffReceiver.Outcome
        do {
            outcome = try self.receiver.receive(from: fd)
        } catch {
            outcome = .endOfStream
        }
        if case .wouldBlock = outcome { return }
        self.pending[fd] = nil
        try? epoll.remove(fd)
        defer { entry.connection.closeIfOpen() }
        guard case .record(let record) = outcome else { return }
        let disposition = HandoffInspection.inspect(record)
        switch HandoffAck.reply(wantsAck: entry.wantsAck, disposition: disposition) {
        case .none:
            break
        case .refuse:
            _ = HandoffAck.send(HandoffAck.refused, on: entry.connection)
        case .acknowledgeThenServe:
            guard HandoffAck.send(HandoffAck.acknowledged, on: entry.connection) else {
                // The sender stopped waiting and answers the client itself.
                disposition.abandon()
                return
            }
        }
        switch disposition {
        case .accepted(let client, let payload):
            self.serve(client, payload: payload)
        case .answer(let client, let rejection):
            Self.write(PlainResponse.refused(tooLarge: rejection == .payloadTooLarge), to: client)
            client.closeIfOpen()
        case .dropped(let rejection):
            self.log("handoff dropped reason=\(rejection.rawValue)")
        }
    }

    // MARK: Children

    private func serve(_ client: OwnedDescriptor, payload: [UInt8]) {
        defer { client.closeIfOpen() }  // the child has its own copy
        guard self.children.hasRoom, !self.draining else {
            Self.write(PlainResponse.busy(retryAfterSeconds: self.configuration.retryAfterSeconds), to: client)
            self.log("handoff refused: \(self.children.count) handlers running (limit \(self.configuration.maxChildren))")
            return
        }
        var environment = ["PATH": ProcessEnvironment.path, "HANDOFF_DATA_BYTES": String(payload.count)]
        var payloadFile: String?
        if payload.count <= self.configuration.maxEnvironmentPayloadBytes, !payload.contains(0) {
            environment["HANDOFF_DATA"] = String(decoding: payload, as: UTF8.self)
        } else {
            do {
                payloadFile = try self.writePayloadFile(payload)
                environment["HANDOFF_DATA_FILE"] = payloadFile
            } catch {
                self.log("payload file failed: \(error)")
                Self.write(PlainResponse.spawnFailed(), to: client)
                return
            }
        }
        do {
            let pid = try Syscall.spawn(
                path: self.configuration.program,
                arguments: self.configuration.arguments,
                environment: environment,
                descriptors: [(client.rawValue, 0), (client.rawValue, 1), (STDERR_FILENO, 2)],
                closeFrom: 3,
                newProcessGroup: true
            )
            self.children.started(pid: pid, at: .now, payloadFile: payloadFile)
        } catch {
            self.log("spawn failed program=\(self.configuration.program) error=\(error)")
            if let payloadFile { try? Syscall.unlink(payloadFile) }
            Self.write(PlainResponse.spawnFailed(), to: client)
        }
    }

    private func reap() {
        while let (pid, clean) = Syscall.reapChild() {
            guard let child = self.children.exited(pid: pid) else { continue }
            if let file = child.payloadFile { try? Syscall.unlink(file) }
            self.log("handler exited pid=\(pid) clean=\(clean) duration_ms=\((ContinuousClock.now - child.started).wholeMilliseconds)")
        }
    }

    private func expire(epoll: Epoll) {
        let now = ContinuousClock.now
        for (fd, entry) in self.pending where now >= entry.deadline {
            self.pending[fd] = nil
            try? epoll.remove(fd)
            entry.connection.closeIfOpen()
        }
        if let deadline = self.drainDeadline, now >= deadline {
            self.drainDeadline = nil
            self.signal(self.children.endAll(at: now))
        }
        self.signal(self.children.due(at: now))
    }

    private func signal(_ signals: [ChildTable.Signal]) {
        for signal in signals {
            switch signal {
            // The handler's whole process group: what it started holds the client socket too.
            case .terminate(let pid):
                self.log("handler over its time pid=\(pid): SIGTERM to its process group")
                Syscall.kill(-pid, signal: SIGTERM)
            case .kill(let pid):
                self.log("handler still running pid=\(pid): SIGKILL to its process group")
                Syscall.kill(-pid, signal: SIGKILL)
            }
        }
    }

    private func takeSignals(from pipe: OwnedDescriptor, listener: SeqpacketListener, epoll: Epoll) {
        for signal in SignalPipe.drain(pipe) where signal == SIGTERM || signal == SIGINT {
            if self.draining {
                self.log("second signal: ending every handler now")
                self.signal(self.children.endAll(at: .now))
                continue
            }
            self.draining = true
            self.drainDeadline = .now + self.configuration.drainTimeout
            try? epoll.remove(listener.rawDescriptor)
            _ = listener.unlinkPathIfOwned()
            listener.close()
            self.log("draining: \(self.children.count) handlers running, up to \(self.configuration.drainTimeout)")
        }
    }

    private func waitMilliseconds() -> Int {
        var deadlines = self.pending.values.map(\.deadline)
        if let next = self.children.nextDeadline { deadlines.append(next) }
        if let drain = self.drainDeadline { deadlines.append(drain) }
        guard let first = deadlines.min() else { return 1000 }
        // One millisecond late rather than early: a wait that ends before the deadline spins.
        return Int(max(0, min(1000, (first - .now).wholeMilliseconds + 1)))
    }

    // MARK: Payload files and answers

    private func writePayloadFile(_ payload: [UInt8]) throws -> String {
        if self.payloadDirectory == nil {
            var template = Array("\(self.configuration.temporaryDirectory)/handoff-exec.XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
                throw ExecError("mkdtemp in \(self.configuration.temporaryDirectory) failed: errno \(errno)")
            }
            self.payloadDirectory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        self.payloadFiles += 1
        let path = "\(self.payloadDirectory!)/payload-\(self.payloadFiles).json"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ExecError("cannot create \(path): errno \(errno)") }
        let file = OwnedDescriptor(taking: fd)
        defer { file.closeIfOpen() }
        var written = 0
        while written < payload.count {
            let count = payload[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { throw ExecError("cannot write \(path): errno \(errno)") }
            written += count
        }
        return path
    }

    private func removePayloadDirectory() {
        guard let directory = self.payloadDirectory else { return }
        rmdir(directory)  // its files went with their children
    }

    private static func write(_ bytes: [UInt8], to client: OwnedDescriptor) {
        var offset = 0
        while offset < bytes.count {
            guard let sent = (try? bytes[offset...].withUnsafeBytes { try Syscall.send(client.rawValue, $0) }) ?? nil, sent > 0 else { return }
            offset += sent
        }
    }
}

/// A failure with a message for the operator.
public struct ExecError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    /// The duration in whole milliseconds, rounded toward zero.
    var wholeMilliseconds: Int64 {
        self.components.seconds * 1000 + self.components.attoseconds / 1_000_000_000_000_000
    }
}

/// The environment children start from: a fixed `PATH`, nothing inherited.
enum ProcessEnvironment {
    static let path = "/usr/local/bin:/usr/bin:/bin"
}
