import Foundation
import HandoffDaemon
import HandoffWire
import Logging
import UnixSignals

/// `--workers N`: one listening socket shared by N daemon processes.
///
/// One process may hold only so many descriptors (20 000 on some hosts); workers multiply the
/// streams a host can hold without raising that limit. The supervisor binds the socket (with the
/// usual stale-socket rules), starts N copies of this executable with it as descriptor 3
/// (`HANDOFFD_LISTEN_FD`), restarts a worker that dies, and on SIGTERM unlinks the path, then
/// passes the signal on so every worker drains; a second signal is passed on too (workers then
/// end their streams at once).
struct WorkerSupervisor {
    let count: Int
    let configuration: DaemonConfiguration
    let arguments: [String]
    let logger: Logger

    static let listenDescriptorVariable = "HANDOFFD_LISTEN_FD"
    static let workerIndexVariable = "HANDOFFD_WORKER_INDEX"

    func run() async throws {
        let listener = try SeqpacketListener.bind(
            path: self.configuration.listener.socketPath,
            mode: self.configuration.listener.socketMode,
            group: self.configuration.listener.socketGroup,
            backlog: self.configuration.listener.backlog
        )
        defer {
            listener.unlinkPathIfOwned()
            listener.close()
        }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var workers: [Int32: Int] = [:]
        func start(_ index: Int) throws {
            var environment = ProcessInfo.processInfo.environment
            environment[Self.listenDescriptorVariable] = "3"
            environment[Self.workerIndexVariable] = String(index)
            let pid = try Syscall.spawn(path: executable, arguments: self.arguments, environment: environment, descriptor: listener.rawDescriptor)
            workers[pid] = index
        }
        for index in 0..<self.count { try start(index) }
        self.logger.info("workers started", metadata: ["workers": "\(self.count)", "socket": "\(self.configuration.listener.socketPath)"])

        let signals = SignalCounter()
        let watcher = Task {
            for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                await signals.received(signal)
            }
        }
        defer { watcher.cancel() }

        var forwarded = 0
        while !workers.isEmpty {
            let received = await signals.count
            if received > forwarded {
                if forwarded == 0 {
                    // New handoffs must not queue behind workers that are about to stop.
                    listener.unlinkPathIfOwned()
                    self.logger.info("draining workers")
                }
                forwarded = received
                for pid in workers.keys { Syscall.kill(pid, signal: SIGTERM) }
            }
            while let (pid, clean) = Syscall.reapChild() {
                guard let index = workers.removeValue(forKey: pid) else { continue }
                if forwarded == 0 {
                    self.logger.error("worker exited; restarting it", metadata: ["worker": "\(index)", "clean": "\(clean)"])
                    try? await Task.sleep(for: .milliseconds(200))
                    try start(index)
                }
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        self.logger.info("all workers stopped")
    }
}

/// Counts signals for the supervisor loop.
private actor SignalCounter {
    private(set) var count = 0

    func received(_ signal: UnixSignal) {
        self.count += 1
    }
}
