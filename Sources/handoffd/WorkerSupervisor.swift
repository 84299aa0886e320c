import Foundation
import HandoffDaemon
import HandoffWire
import Logging
import UnixSignals

/// `--workers N`: one listening socket shared by N daemon processes.
///
/// One process may hold only so many descriptors (20 000 on some hosts); workers multiply the
/// streams a host can hold without raising that limit. The supervisor binds the socket (with the
/// usual stale-socket rules) or adopts it (socket activation, or a predecessor's at a reload),
/// starts N copies of this executable on it, and reports ready (to systemd, or to the
/// predecessor) once every worker accepts.
///
/// - A worker that dies is restarted, with a backoff that grows while it keeps dying
///   (``restartDelay(failures:)``); a failed spawn is retried the same way, never abandoning
///   the other workers.
/// - SIGTERM/SIGINT: unlink the path (when owned) and pass SIGTERM on, so every worker takes the
///   queued handoffs and drains; a second signal is passed on too (workers then end their
///   streams at once).
/// - SIGHUP: a successor supervisor (the binary and configuration on disk now) starts its own
///   workers on the same socket; once they all accept, this one sends its workers SIGQUIT
///   (stop accepting, leave the backlog, drain) and exits after them.
struct WorkerSupervisor {
    let count: Int
    let configuration: DaemonConfiguration
    let executable: String
    let arguments: [String]
    let environment: [String: String]
    let readiness: CInt?
    let logger: Logger

    static let workerIndexVariable = "HANDOFFD_WORKER_INDEX"
    /// How long every worker together may take to start accepting.
    static let startTimeout: Duration = .seconds(60)

    /// The wait before restarting a worker that failed `failures` times in a row: 200 ms,
    /// doubling, at most 10 s.
    static func restartDelay(failures: Int) -> Duration {
        .milliseconds(min(10_000, 200 << min(failures, 6)))
    }

    func run() async throws {
        let listener: SeqpacketListener
        if let inherited = self.configuration.listener.inheritedDescriptor {
            listener = try SeqpacketListener.adopt(
                descriptor: inherited,
                path: self.configuration.listener.socketPath,
                ownsPath: self.configuration.listener.ownsInheritedPath
            )
        } else {
            listener = try SeqpacketListener.bind(
                path: self.configuration.listener.socketPath,
                mode: self.configuration.listener.socketMode,
                group: self.configuration.listener.socketGroup,
                backlog: self.configuration.listener.backlog
            )
        }
        var pool = WorkerPool(supervisor: self, listener: listener.rawDescriptor)
        let reloader = Reloader(
            executable: self.executable,
            arguments: self.arguments,
            environment: self.environment,
            logger: self.logger,
            listener: { [fd = listener.rawDescriptor, owns = listener.ownsPath] in (fd, owns) },
            handOver: {}
        )
        defer {
            listener.close()
        }
        // Trapped before the workers start: a signal during their start waits its turn.
        let signals = SignalInbox()
        let trapped = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        let watcher = Task {
            for await signal in trapped {
                await signals.received(signal)
            }
        }
        defer { watcher.cancel() }

        do {
            try await pool.startAll()
        } catch {
            self.logger.critical("workers could not start; stopping the ones that did", metadata: ["error": "\(error)"])
            await pool.stopAll(signal: SIGTERM)
            listener.unlinkPathIfOwned()
            throw error
        }
        self.logger.info("workers accept handoffs", metadata: ["workers": "\(self.count)", "socket": "\(self.configuration.listener.socketPath)"])
        if let readiness = self.readiness {
            ReadinessReport.send(on: readiness)
        } else {
            SystemdNotify.send("READY=1\nSTATUS=\(self.count) workers accept handoffs", environment: self.environment)
        }

        var stops = 0
        var retiring = false
        while !pool.isEmpty || !(stops > 0 || retiring) {
            for signal in await signals.take() {
                if signal == .sighup {
                    Task { await reloader.reload() }
                    continue
                }
                stops += 1
                if stops == 1 {
                    await reloader.stop()
                    // New handoffs must not queue behind workers that are about to stop.
                    if !retiring { listener.unlinkPathIfOwned() }
                    self.logger.info("draining workers")
                }
                pool.signalAll(SIGTERM)
            }
            if !retiring, stops == 0, await reloader.hasHandedOver {
                retiring = true
                self.logger.notice("handed over to a successor; retiring workers")
                pool.signalAll(SIGQUIT)
            }
            pool.reapAndRestart(restarting: stops == 0 && !retiring)
            try? await Task.sleep(for: .milliseconds(50))
        }
        self.logger.info("all workers stopped")
    }
}

/// The supervisor's workers: who runs, and when a dead one may be restarted.
private struct WorkerPool {
    private struct Worker {
        var index: Int
        var started: ContinuousClock.Instant
    }

    let supervisor: WorkerSupervisor
    let listener: CInt
    private var running: [Int32: Worker] = [:]
    private var failures: [Int: Int] = [:]
    private var restartAt: [Int: ContinuousClock.Instant] = [:]

    init(supervisor: WorkerSupervisor, listener: CInt) {
        self.supervisor = supervisor
        self.listener = listener
    }

    var isEmpty: Bool { self.running.isEmpty && self.restartAt.isEmpty }

    /// Starts every worker and waits until all accept; throws (leaving the started ones
    /// running, for ``stopAll(signal:)``) when one cannot start.
    mutating func startAll() async throws {
        var children: [ChildProcess] = []
        defer { children.forEach { $0.close() } }
        for index in 0..<self.supervisor.count {
            children.append(try self.spawn(index))
        }
        for child in children {
            if let failure = await child.waitUntilReady(timeout: WorkerSupervisor.startTimeout) {
                throw SupervisorError(message: "worker \(self.running[child.pid]?.index ?? -1): \(failure)")
            }
        }
    }

    private mutating func spawn(_ index: Int) throws -> ChildProcess {
        var environment = self.supervisor.environment.filter { !ChildProcess.handoverVariables.contains($0.key) && $0.key != "NOTIFY_SOCKET" }
        environment[WorkerSupervisor.workerIndexVariable] = String(index)
        let child = try ChildProcess.start(
            executable: self.supervisor.executable,
            arguments: self.supervisor.arguments,
            environment: environment,
            listener: self.listener
        )
        self.running[child.pid] = Worker(index: index, started: .now)
        return child
    }

    func signalAll(_ signal: CInt) {
        for pid in self.running.keys { Syscall.kill(pid, signal: signal) }
    }

    /// Sends `signal` to every worker and waits until all have exited.
    mutating func stopAll(signal: CInt) async {
        self.signalAll(signal)
        self.restartAt = [:]
        while !self.running.isEmpty {
            self.reapAndRestart(restarting: false)
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Reaps exited workers; with `restarting`, schedules and performs restarts with backoff.
    mutating func reapAndRestart(restarting: Bool) {
        while let (pid, clean) = Syscall.reapChild() {
            guard let worker = self.running.removeValue(forKey: pid) else { continue }
            guard restarting else { continue }
            // A worker that ran a while before dying starts a fresh backoff series.
            let failures = worker.started.duration(to: .now) > .seconds(30) ? 0 : (self.failures[worker.index] ?? 0)
            self.failures[worker.index] = failures + 1
            let delay = WorkerSupervisor.restartDelay(failures: failures)
            self.restartAt[worker.index] = .now + delay
            self.supervisor.logger.error(
                "worker exited; restarting it",
                metadata: ["worker": "\(worker.index)", "clean": "\(clean)", "delay": "\(delay)"]
            )
        }
        guard restarting else {
            self.restartAt = [:]
            return
        }
        for (index, when) in self.restartAt where when <= .now {
            self.restartAt[index] = nil
            do {
                try self.spawn(index).close()
            } catch {
                let failures = self.failures[index, default: 0]
                self.failures[index] = failures + 1
                self.restartAt[index] = .now + WorkerSupervisor.restartDelay(failures: failures)
                self.supervisor.logger.error("restarting a worker failed; trying again", metadata: ["worker": "\(index)", "error": "\(error)"])
            }
        }
    }
}

struct SupervisorError: Error, CustomStringConvertible {
    var message: String
    var description: String { self.message }
}

/// Signals received, for the supervisor loop.
private actor SignalInbox {
    private var pending: [UnixSignal] = []

    func received(_ signal: UnixSignal) {
        self.pending.append(signal)
    }

    func take() -> [UnixSignal] {
        defer { self.pending = [] }
        return self.pending
    }
}
