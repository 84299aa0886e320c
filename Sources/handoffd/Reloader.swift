import Foundation
import HandoffDaemon
import HandoffWire
import Logging

/// Performs ``ReloadStateMachine``'s actions for one process: SIGHUP starts a successor (this
/// executable as it is on disk now, with the configuration as it is now) on the shared socket,
/// and hands over only once the successor accepts. A successor that fails leaves this process
/// serving, and the service manager is told why.
actor Reloader {
    /// How long a successor may take to start accepting.
    static let readyTimeout: Duration = .seconds(60)

    private var machine = ReloadStateMachine()
    private let executable: String
    private let arguments: [String]
    private let environment: [String: String]
    private let logger: Logger
    private let listener: @Sendable () -> (fd: CInt, ownsPath: Bool)
    private let handOver: @Sendable () async -> Void

    /// - Parameters:
    ///   - executable: the path this process was started from (a package upgrade replaces the
    ///     file there, so the successor runs the new binary).
    ///   - listener: the listening descriptor to share, and whether this process owns the path.
    ///   - handOver: stops accepting (leaving the backlog) and drains; called once.
    init(
        executable: String,
        arguments: [String],
        environment: [String: String],
        logger: Logger,
        listener: @escaping @Sendable () -> (fd: CInt, ownsPath: Bool),
        handOver: @escaping @Sendable () async -> Void
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment.filter { !ChildProcess.handoverVariables.contains($0.key) }
        self.logger = logger
        self.listener = listener
        self.handOver = handOver
    }

    /// Whether this process has handed its socket over.
    var hasHandedOver: Bool { self.machine.hasHandedOver }

    /// SIGHUP.
    func reload() async {
        switch self.machine.reloadRequested() {
        case .startSuccessor:
            break
        case .ignoreReloadInProgress:
            self.logger.notice("reload already in progress; this request is ignored")
            return
        default:
            self.logger.notice("stopping; reload request ignored")
            return
        }
        SystemdNotify.send("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotify.monotonicMicroseconds)\nSTATUS=reloading: starting a successor", environment: self.environment)
        let (fd, ownsPath) = self.listener()
        var environment = self.environment
        environment[ChildProcess.ownsPathVariable] = ownsPath ? "1" : "0"
        let successor: ChildProcess
        do {
            successor = try ChildProcess.start(executable: self.executable, arguments: self.arguments, environment: environment, listener: fd)
        } catch {
            await self.perform(self.machine.successorFailed(reason: "cannot start \(self.executable): \(error)"))
            return
        }
        defer { successor.close() }
        let pid = successor.pid
        self.logger.info("reload: successor started", metadata: ["pid": "\(pid)", "executable": "\(self.executable)"])
        if case .stop(let pid?) = self.machine.successorStarted(pid: pid) {
            Syscall.kill(pid, signal: SIGTERM)
            return
        }
        if let failure = await successor.waitUntilReady(timeout: Self.readyTimeout) {
            Syscall.kill(pid, signal: SIGTERM)
            for _ in 0..<200 where Syscall.reap(pid) == nil {
                try? await Task.sleep(for: .milliseconds(10))
            }
            await self.perform(self.machine.successorFailed(reason: failure))
        } else {
            await self.perform(self.machine.successorReady())
        }
    }

    /// SIGTERM/SIGINT: a successor still on probation is stopped with this process.
    func stop() async {
        await self.perform(self.machine.stopRequested())
    }

    private func perform(_ action: ReloadStateMachine.Action) async {
        switch action {
        case .handOver(let pid):
            self.logger.notice("reload: the successor accepts handoffs; this process stops accepting and drains", metadata: ["successor": "\(pid)"])
            SystemdNotify.send("MAINPID=\(pid)\nREADY=1\nSTATUS=reloaded: process \(pid) serves", environment: self.environment)
            await self.handOver()
        case .keepServing(let reason):
            self.logger.error("reload failed; still serving with the previous binary and configuration", metadata: ["reason": "\(reason)"])
            SystemdNotify.send("READY=1\nSTATUS=reload failed: \(reason)", environment: self.environment)
        case .stop(let pid?):
            Syscall.kill(pid, signal: SIGTERM)
        case .stop(nil), .none, .startSuccessor, .ignoreReloadInProgress, .ignoreStopping:
            return
        }
    }
}

/// `sd_notify(3)` when the service manager asked for it (`NOTIFY_SOCKET`, `Type=notify`).
enum SystemdNotify {
    static func send(_ message: String, environment: [String: String]) {
        guard let path = environment["NOTIFY_SOCKET"], path.hasPrefix("/") else { return }
        try? SystemdNotifier.send(message, to: path)
    }

    /// `CLOCK_MONOTONIC` in µs, as `RELOADING=1` wants it.
    static var monotonicMicroseconds: UInt64 { Syscall.monotonicNanoseconds() / 1000 }
}
