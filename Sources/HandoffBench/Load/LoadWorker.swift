import Foundation
import HandoffClientKit
import HandoffWire

#if canImport(Glibc)
import Glibc
#endif

/// One process's share of a load run: a single thread with its own epoll that starts streams on
/// schedule (handing them off exactly as Apache does, or sending HTTP requests to Apache) and
/// reads every response, recording when each milestone arrived.
public final class LoadWorker {
    private let configuration: LoadConfiguration
    private let epoll: Epoll
    private var probes: [StreamProbe?]
    private var active = 0
    private var result = LoadResult()
    private var listener: LoopbackListener?
    private var readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    private let httpRequest: [UInt8]
    /// The payload split at each `{n}`, when it has any: every handoff gets a unique id there
    /// (this process's pid and a counter), e.g. for `stream_id`.
    private let payloadParts: [[UInt8]]?
    private var sequence = 0

    public init(configuration: LoadConfiguration) throws {
        self.configuration = configuration
        self.epoll = try Epoll(capacity: 256)
        self.probes = Array(repeating: nil, count: max(1024, try Syscall.openFileLimit() + 16))
        if case .handoff(_, .tcp) = configuration.target {
            self.listener = try LoopbackListener(backlog: 4096)
        }
        let marker = Array("{n}".utf8)
        if configuration.payload.count >= marker.count,
            (0...(configuration.payload.count - marker.count)).contains(where: { Array(configuration.payload[$0..<($0 + marker.count)]) == marker })
        {
            var parts: [[UInt8]] = [[]]
            var index = 0
            let payload = configuration.payload
            while index < payload.count {
                if index + marker.count <= payload.count, Array(payload[index..<(index + marker.count)]) == marker {
                    parts.append([])
                    index += marker.count
                } else {
                    parts[parts.count - 1].append(payload[index])
                    index += 1
                }
            }
            self.payloadParts = parts
        } else {
            self.payloadParts = nil
        }
        if case .http(let host, let port, let path) = configuration.target {
            var request = "POST \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Type: application/json\r\n"
            request += "Content-Length: \(configuration.payload.count)\r\nConnection: close\r\n\r\n"
            self.httpRequest = Array(request.utf8) + configuration.payload
        } else {
            self.httpRequest = []
        }
    }

    deinit {
        self.readBuffer.deallocate()
    }

    private var cachedMark: UInt64?

    /// The time in ``LoadConfiguration/markFile``, once it is there.
    private func mark() -> UInt64? {
        if let cachedMark { return cachedMark }
        guard let file = self.configuration.markFile, let text = try? String(contentsOfFile: file, encoding: .utf8),
            let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        self.cachedMark = value
        return value
    }

    private func nextPayload() -> [UInt8] {
        guard let parts = self.payloadParts else { return self.configuration.payload }
        self.sequence += 1
        let id = Array("\(getpid())-\(self.sequence)".utf8)
        var payload = parts[0]
        for part in parts.dropFirst() {
            payload += id
            payload += part
        }
        return payload
    }

    /// Runs the load and returns what it measured. `progress` is called about once a second.
    public func run(progress: (LoadProgress) -> Void = { _ in }) -> LoadResult {
        let start = Self.now()
        let ramp = Self.nanoseconds(self.configuration.rampUp)
        let hold = Self.nanoseconds(self.configuration.hold)
        let timeout = Self.nanoseconds(self.configuration.streamTimeout)
        let total = self.configuration.connections
        let stopStarting = start + ramp + hold
        var scheduled = 0
        var nextProgress = start + 1_000_000_000
        var nextTimeoutScan = start + 100_000_000

        while true {
            var now = Self.now()
            // Start what is due: one-shot streams on the ramp, or refill a sustained load.
            if self.configuration.sustained {
                let target = ramp == 0 || now >= start + ramp ? total : Int(Double(total) * Double(now - start) / Double(ramp))
                while self.active < target, now < stopStarting {
                    self.startStream(at: now)
                    now = Self.now()
                }
            } else {
                while scheduled < total, ramp == 0 || start + ramp * UInt64(scheduled) / UInt64(total) <= now {
                    self.startStream(at: now)
                    scheduled += 1
                    now = Self.now()
                }
            }
            self.result.peakConcurrent = max(self.result.peakConcurrent, self.active)

            let finished = self.configuration.sustained ? now >= stopStarting && self.active == 0 : scheduled == total && self.active == 0
            if finished || now >= stopStarting + timeout + 1_000_000_000 { break }

            let wait = self.configuration.sustained || scheduled == total || ramp == 0
                ? 100 : Self.milliseconds(until: start + ramp * UInt64(scheduled) / UInt64(total), now: now)
            try? self.epoll.wait(timeoutMilliseconds: wait) { token, _ in
                self.read(fd: CInt(token))
            }

            now = Self.now()
            if now >= nextTimeoutScan {
                nextTimeoutScan = now + 100_000_000
                self.expire(olderThan: timeout, now: now)
            }
            if now >= nextProgress {
                nextProgress = now + 1_000_000_000
                progress(self.progress(now: now, start: start))
            }
        }
        // Whatever is still open has run out of time.
        for probe in self.probes.compactMap({ $0 }) { self.finish(probe, timedOut: true, readError: false) }
        self.result.elapsedSeconds = Double(Self.now() - start) / 1e9
        progress(self.progress(now: Self.now(), start: start))
        return self.result
    }

    private func progress(now: UInt64, start: UInt64) -> LoadProgress {
        LoadProgress(
            elapsedSeconds: Double(now - start) / 1e9,
            active: self.active,
            started: self.result.started,
            completed: self.result.completed,
            failed: self.result.failed
        )
    }

    // MARK: Starting streams

    private func startStream(at startedAt: UInt64) {
        self.result.started += 1
        do {
            let probe: StreamProbe
            switch self.configuration.target {
            case .handoff(let path, let kind):
                probe = try self.handOff(to: path, kind: kind, startedAt: startedAt)
            case .http(_, let port, _):
                probe = try self.sendHTTP(port: port, startedAt: startedAt)
            }
            try self.epoll.add(probe.fd, events: [.readable, .readHangup], token: UInt64(probe.fd))
            self.probes[Int(probe.fd)] = probe
            self.active += 1
        } catch let failure as StartFailure {
            self.result.failures[failure.kind.rawValue, default: 0] += 1
        } catch {
            self.result.failures[StreamProbe.Failure.connect.rawValue, default: 0] += 1
        }
    }

    private struct StartFailure: Error {
        var kind: StreamProbe.Failure
    }

    /// Exactly what mod_socket_handoff does with a client connection.
    private func handOff(to path: String, kind: LoadConfiguration.ClientKind, startedAt: UInt64) throws -> StreamProbe {
        let client: OwnedDescriptor
        let server: OwnedDescriptor
        switch kind {
        case .socketpair:
            let (a, b) = try Syscall.socketpair(domain: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: true)
            client = OwnedDescriptor(taking: a)
            server = OwnedDescriptor(taking: b)
        case .tcp:
            (client, server) = try self.listener!.connectedPair(nonBlockingClient: true)
        }
        defer { server.closeIfOpen() }
        let probe = StreamProbe(fd: client.takeDescriptorOwnership(), startedAt: startedAt)
        do {
            let connection = try self.connectWithRetry(path)
            defer { connection.closeIfOpen() }
            probe.connectedAt = Self.now()
            let payload = self.nextPayload()
            var sent = try HandoffSender.send(on: connection.rawValue, payload: payload, descriptors: [server.rawValue])
            while !sent {
                var pfd = pollfd(fd: connection.rawValue, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pfd, 1, 100)
                sent = try HandoffSender.send(on: connection.rawValue, payload: payload, descriptors: [server.rawValue])
            }
            if let timeout = self.configuration.ackTimeoutMilliseconds {
                switch HandoffSender.awaitAck(on: connection.rawValue, timeoutMilliseconds: timeout) {
                case .committed, .committedToLegacyDaemon: break
                case .refusedByDaemon, .notHandedOff: throw StartFailure(kind: .notAcknowledged)
                }
            }
            probe.handedOffAt = Self.now()
        } catch let failure as StartFailure {
            close(probe.fd)
            throw failure
        } catch {
            close(probe.fd)
            throw StartFailure(kind: .handoff)
        }
        return probe
    }

    /// Connects to the daemon, retrying while its backlog is full (as the module does).
    private func connectWithRetry(_ path: String) throws -> OwnedDescriptor {
        let deadline = Self.now() + 5_000_000_000
        while true {
            do {
                if let connection = try HandoffSender.connect(to: path, requestingAck: self.configuration.ackTimeoutMilliseconds != nil) {
                    return connection
                }
            } catch {
                throw StartFailure(kind: .connect)
            }
            self.result.backlogRetries += 1
            guard Self.now() < deadline else { throw StartFailure(kind: .connect) }
            usleep(500)
        }
    }

    /// A browser's request to Apache.
    private func sendHTTP(port: Int, startedAt: UInt64) throws -> StreamProbe {
        let socket: OwnedDescriptor
        do {
            socket = try LoopbackTCP.connect(port: port, nonBlocking: true)
        } catch {
            throw StartFailure(kind: .connect)
        }
        let probe = StreamProbe(fd: socket.takeDescriptorOwnership(), startedAt: startedAt)
        var pfd = pollfd(fd: probe.fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&pfd, 1, 5000) == 1, pfd.revents & Int16(POLLOUT) != 0 else {
            close(probe.fd)
            throw StartFailure(kind: .connect)
        }
        probe.connectedAt = Self.now()
        let written = self.httpRequest.withUnsafeBytes { try? Syscall.send(probe.fd, $0) }
        guard written == self.httpRequest.count else {
            close(probe.fd)
            throw StartFailure(kind: .handoff)
        }
        probe.handedOffAt = Self.now()
        return probe
    }

    // MARK: Reading

    private func read(fd: CInt) {
        guard let probe = self.probes[Int(fd)] else { return }
        while true {
            let count = recv(fd, self.readBuffer.baseAddress, self.readBuffer.count, Int32(MSG_DONTWAIT))
            if count > 0 {
                probe.received(UnsafeRawBufferPointer(rebasing: self.readBuffer[0..<count]), at: Self.now())
                continue
            }
            if count == 0 {
                self.finish(probe, timedOut: false, readError: false)
                return
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK: return
            case EINTR: continue
            default:
                // A reset after a complete response (the peer closed with data unread) is fine.
                self.finish(probe, timedOut: false, readError: !probe.done)
                return
            }
        }
    }

    private func expire(olderThan timeout: UInt64, now: UInt64) {
        for case let probe? in self.probes where now - probe.startedAt > timeout {
            self.finish(probe, timedOut: true, readError: false)
        }
    }

    private func finish(_ probe: StreamProbe, timedOut: Bool, readError: Bool) {
        guard self.probes[Int(probe.fd)] === probe else { return }
        self.probes[Int(probe.fd)] = nil
        close(probe.fd)
        self.active -= 1
        let end = Self.now()
        self.result.bytes += probe.bytes
        if probe.connectedAt > 0 { self.result.record("connect", nanoseconds: probe.connectedAt - probe.startedAt) }
        if probe.handedOffAt > 0 { self.result.record("handoff", nanoseconds: probe.handedOffAt - max(probe.connectedAt, probe.startedAt)) }
        if probe.statusAt > 0 { self.result.record("status", nanoseconds: probe.statusAt - probe.startedAt) }
        if probe.firstEventAt > 0 { self.result.record("first_event", nanoseconds: probe.firstEventAt - probe.startedAt) }
        if probe.firstContentAt > 0 { self.result.record("first_content", nanoseconds: probe.firstContentAt - probe.startedAt) }
        if probe.firstContentAt > 0, let mark = self.mark(), probe.firstContentAt >= mark {
            self.result.record("after_mark", nanoseconds: probe.firstContentAt - mark)
        }
        if let failure = probe.verdict(expectedEvents: self.configuration.expectedEvents, timedOut: timedOut, readError: readError) {
            self.result.failures[failure.rawValue, default: 0] += 1
        } else {
            self.result.completed += 1
            self.result.record("duration", nanoseconds: end - probe.startedAt)
        }
    }

    // MARK: Time

    /// epoll's timeout until `due`: whole milliseconds rounded up (at most 100), so a start due
    /// in under a millisecond sleeps until then instead of spinning on a core the daemon
    /// under test needs; 0 only when it is already due.
    static func milliseconds(until due: UInt64, now: UInt64) -> Int {
        guard due > now else { return 0 }
        return min(100, Int((due - now + 999_999) / 1_000_000))
    }

    static func now() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds / 1_000_000_000))
    }
}
