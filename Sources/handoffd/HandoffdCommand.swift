import ArgumentParser
import Foundation
import HandoffDaemon
import HandoffWire
import Logging
import Metrics
import Prometheus
import UnixSignals

/// The handoffd executable: flags → configuration → logging → the daemon's services.
@main
struct HandoffdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoffd",
        abstract: "Streams HTTP responses on client sockets handed off by Apache's mod_socket_handoff.",
        helpNames: []
    )

    /// Everything on the command line: the options come from the one table of keys
    /// (`ConfigurationSource.keys`), parsed by `ConfigurationSource.parseArguments`.
    @Argument(parsing: .captureForPassthrough) var arguments: [String] = []

    func run() async throws {
        // Peers that vanish must never kill the process; every socket write handles EPIPE.
        signal(SIGPIPE, SIG_IGN)
        let environment = ProcessInfo.processInfo.environment
        let parsed: ConfigurationSource.Arguments
        do {
            parsed = try ConfigurationSource.parseArguments(self.arguments)
        } catch {
            throw ValidationError(error.description)
        }
        if parsed.help {
            print(ConfigurationSource.helpText(), terminator: "")
            return
        }
        let flags = parsed.values
        if parsed.exampleConfig {
            print(ConfigurationSource.exampleFile(), terminator: "")
            return
        }
        var configuration: DaemonConfiguration
        do {
            configuration = try ConfigurationSource.resolve(flags: flags, environment: environment)
        } catch {
            throw ValidationError(error.description)
        }
        if parsed.checkConfig {
            print("handoffd: configuration OK (socket \(configuration.listener.socketPath), backend \(configuration.defaultBackend.rawValue))")
            return
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "handoffd")
        let readiness = ReadinessReport.descriptor(environment: environment)

        if let inherited = SocketActivation.inheritedDescriptor(environment: environment) {
            configuration.listener.inheritedDescriptor = inherited
        }
        if let shared = environment[ChildProcess.listenDescriptorVariable].flatMap(Int32.init) {
            // A supervisor's worker, or a reload's successor: the socket is shared with us.
            configuration.listener.inheritedDescriptor = shared
            configuration.listener.ownsInheritedPath = environment[ChildProcess.ownsPathVariable] == "1"
        }

        let workerCount = configuration.workers
        // The path this binary was started from: a package upgrade replaces the file there, and
        // a reload starts what is there then.
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let arguments = Array(CommandLine.arguments.dropFirst())
        let role: DaemonRole
        if let index = environment[WorkerSupervisor.workerIndexVariable].flatMap(Int.init) {
            role = .worker
            configuration.listener.drainsInheritedBacklog = true
            if var address = configuration.metricsAddress {
                address.port += index
                configuration.metricsAddress = address
            }
        } else if workerCount > 1 {
            let supervisor = WorkerSupervisor(
                count: workerCount,
                configuration: configuration,
                executable: executable,
                arguments: arguments,
                environment: environment,
                readiness: readiness,
                logger: logger
            )
            try await supervisor.run()
            return
        } else {
            role = .single
        }

        // Trapped before the socket accepts, so a SIGHUP right after start reloads rather than
        // ends the process. SIGHUP reloads (a worker leaves that to its supervisor); SIGQUIT
        // retires a worker at its supervisor's reload.
        let trapped = await UnixSignalsSequence(trapping: role == .worker ? [.sigterm, .sigint, .sighup, .sigquit] : [.sigterm, .sigint, .sighup])

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let daemon: HandoffDaemon
        do {
            daemon = try HandoffDaemon(
                configuration: configuration,
                logger: logger,
                renderMetrics: { registry.emitToBuffer() },
                signals: true
            )
        } catch {
            logger.critical("handoffd cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        let reloader = role == .single
            ? Reloader(
                executable: executable,
                arguments: arguments,
                environment: environment,
                logger: logger,
                listener: { (daemon.listenerDescriptor, daemon.ownsSocketPath) },
                handOver: { await daemon.retire() }
            )
            : nil
        let ready = Task {
            while !daemon.isAccepting, !Task.isCancelled { try? await Task.sleep(for: .milliseconds(2)) }
            if let readiness {
                ReadinessReport.send(on: readiness)
            } else if role == .single {
                SystemdNotify.send("READY=1\nMAINPID=\(Syscall.processID)\nSTATUS=accepting handoffs", environment: environment)
            }
        }
        defer { ready.cancel() }
        // The service group turns the first SIGTERM/SIGINT into a graceful drain; a second one
        // means "now": end every stream with an error event and exit.
        let signals = Task {
            var stops = 0
            for await signal in trapped {
                switch signal {
                case .sighup:
                    if let reloader {
                        Task { await reloader.reload() }
                    } else {
                        logger.notice("SIGHUP ignored by a worker: reload its supervisor")
                    }
                case .sigquit:
                    await daemon.retire()
                default:
                    stops += 1
                    if stops == 1 {
                        await reloader?.stop()
                        // The service group hears it too; this covers a signal that came
                        // before the group began to listen.
                        await daemon.triggerGracefulShutdown()
                        continue
                    }
                    logger.notice("second signal: ending all streams now")
                    await daemon.endAllStreamsNow()
                    Foundation.exit(0)
                }
            }
        }
        defer { signals.cancel() }
        try await daemon.run()
        logger.info("handoffd stopped")
    }
}

/// What this process is.
enum DaemonRole {
    /// A daemon on its own: it reloads itself on SIGHUP.
    case single
    /// One of a supervisor's workers.
    case worker
}
