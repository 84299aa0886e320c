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
        discussion: """
            Every option can also be set with its environment variable; a flag wins over the
            environment, which wins over the default. OPENAI_BASE_URL and OPENAI_API_KEY are
            honoured too.

            \(ConfigurationSource.keys.map { "  --\($0.name)\n      \($0.environment)" }.joined(separator: "\n"))

            Socket activation: when started by systemd with LISTEN_FDS=1, the inherited socket
            is used and --socket only names it in logs.
            """
    )

    @Option(help: .init(Self.help("config"), valueName: "file")) var config: String?
    @Option(help: .init(Self.help("socket"), valueName: "path")) var socket: String?
    @Option(name: .customLong("socket-mode"), help: .init(Self.help("socket-mode"), valueName: "octal")) var socketMode: String?
    @Option(name: .customLong("socket-group"), help: .init(Self.help("socket-group"), valueName: "group")) var socketGroup: String?
    @Option(name: .customLong("allow-uid"), help: .init(Self.help("allow-uid"), valueName: "users")) var allowUID: String?
    @Option(help: .init(Self.help("backend"), valueName: "name")) var backend: String?
    @Option(name: .customLong("mock-messages"), help: .init(Self.help("mock-messages"), valueName: "n")) var mockMessages: String?
    @Option(name: .customLong("mock-interval-ms"), help: .init(Self.help("mock-interval-ms"), valueName: "ms")) var mockIntervalMs: String?
    @Option(name: .customLong("mock-text"), help: .init(Self.help("mock-text"), valueName: "style")) var mockText: String?
    @Option(name: .customLong("max-connections"), help: .init(Self.help("max-connections"), valueName: "n")) var maxConnections: String?
    @Option(name: .customLong("max-handoff-bytes"), help: .init(Self.help("max-handoff-bytes"), valueName: "bytes")) var maxHandoffBytes: String?
    @Option(name: .customLong("handoff-timeout-ms"), help: .init(Self.help("handoff-timeout-ms"), valueName: "ms")) var handoffTimeoutMs: String?
    @Option(name: .customLong("write-timeout-s"), help: .init(Self.help("write-timeout-s"), valueName: "s")) var writeTimeoutS: String?
    @Option(name: .customLong("drain-timeout-s"), help: .init(Self.help("drain-timeout-s"), valueName: "s")) var drainTimeoutS: String?
    @Option(name: .customLong("linger-ms"), help: .init(Self.help("linger-ms"), valueName: "ms")) var lingerMs: String?
    @Option(help: .init(Self.help("backlog"), valueName: "n")) var backlog: String?
    @Option(name: .customLong("openai-base-url"), help: .init(Self.help("openai-base-url"), valueName: "url")) var openAIBaseURL: String?
    @Option(name: .customLong("openai-api-key"), help: .init(Self.help("openai-api-key"), valueName: "key")) var openAIAPIKey: String?
    @Option(name: .customLong("openai-api-key-file"), help: .init(Self.help("openai-api-key-file"), valueName: "path")) var openAIAPIKeyFile: String?
    @Option(name: .customLong("openai-model"), help: .init(Self.help("openai-model"), valueName: "model")) var openAIModel: String?
    @Option(name: .customLong("upstream-http"), help: .init(Self.help("upstream-http"), valueName: "version")) var upstreamHTTP: String?
    @Option(name: .customLong("upstream-unix-socket"), help: .init(Self.help("upstream-unix-socket"), valueName: "path")) var upstreamUnixSocket: String?
    @Flag(name: .customLong("upstream-insecure"), help: .init(Self.help("upstream-insecure"))) var upstreamInsecure = false
    @Option(name: .customLong("upstream-ca-file"), help: .init(Self.help("upstream-ca-file"), valueName: "path")) var upstreamCAFile: String?
    @Option(name: .customLong("upstream-max-connections"), help: .init(Self.help("upstream-max-connections"), valueName: "n")) var upstreamMaxConnections: String?
    @Option(name: .customLong("upstream-connect-timeout-ms"), help: .init(Self.help("upstream-connect-timeout-ms"), valueName: "ms")) var upstreamConnectTimeoutMs: String?
    @Option(name: .customLong("upstream-first-byte-timeout-ms"), help: .init(Self.help("upstream-first-byte-timeout-ms"), valueName: "ms")) var upstreamFirstByteTimeoutMs: String?
    @Option(name: .customLong("upstream-idle-timeout-s"), help: .init(Self.help("upstream-idle-timeout-s"), valueName: "s")) var upstreamIdleTimeoutS: String?
    @Option(name: .customLong("max-stream-duration-s"), help: .init(Self.help("max-stream-duration-s"), valueName: "s")) var maxStreamDurationS: String?
    @Option(name: .customLong("keepalive-interval-s"), help: .init(Self.help("keepalive-interval-s"), valueName: "s")) var keepAliveIntervalS: String?
    @Option(name: .customLong("access-log"), help: .init(Self.help("access-log"), valueName: "on|off")) var accessLog: String?
    @Option(name: .customLong("metrics-address"), help: .init(Self.help("metrics-address"), valueName: "host:port")) var metricsAddress: String?
    @Option(help: .init(Self.help("workers"), valueName: "n")) var workers: String?
    @Option(name: .customLong("event-loops"), help: .init(Self.help("event-loops"), valueName: "n")) var eventLoops: String?
    @Option(name: .customLong("data-dir"), help: .init(Self.help("data-dir"), valueName: "path")) var dataDir: String?
    @Option(name: .customLong("max-attachment-bytes"), help: .init(Self.help("max-attachment-bytes"), valueName: "bytes")) var maxAttachmentBytes: String?
    @Option(name: .customLong("max-upstream-event-bytes"), help: .init(Self.help("max-upstream-event-bytes"), valueName: "bytes")) var maxUpstreamEventBytes: String?
    @Option(name: .customLong("redis-url"), help: .init(Self.help("redis-url"), valueName: "url")) var redisURL: String?
    @Option(name: .customLong("resume-ttl-s"), help: .init(Self.help("resume-ttl-s"), valueName: "s")) var resumeTTLS: String?
    @Option(name: .customLong("redis-key-prefix"), help: .init(Self.help("redis-key-prefix"), valueName: "prefix")) var redisKeyPrefix: String?
    @Option(name: .customLong("completion-url"), help: .init(Self.help("completion-url"), valueName: "url")) var completionURL: String?
    @Option(name: .customLong("completion-secret-file"), help: .init(Self.help("completion-secret-file"), valueName: "path")) var completionSecretFile: String?
    @Option(name: .customLong("completion-timeout-ms"), help: .init(Self.help("completion-timeout-ms"), valueName: "ms")) var completionTimeoutMs: String?
    @Option(name: .customLong("completion-max-age-s"), help: .init(Self.help("completion-max-age-s"), valueName: "s")) var completionMaxAgeS: String?
    @Flag(name: .customLong("check-config"), help: "Check the configuration (flags, environment, --config file), print what is wrong or 'configuration OK', and exit.") var checkConfig = false
    @Flag(name: .customLong("example-config"), help: "Print a YAML configuration file with every key, commented, and exit.") var exampleConfig = false
    @Option(name: .customLong("log-level"), help: .init(Self.help("log-level"), valueName: "level")) var logLevel: String?

    static func help(_ key: String) -> String {
        let entry = ConfigurationSource.keys.first { $0.name == key }!
        return "\(entry.help) [env: \(entry.environment)]"
    }

    /// The flags that were given, keyed by their long names.
    var givenFlags: [String: String] {
        let pairs: [(String, String?)] = [
            ("config", self.config), ("socket", self.socket), ("socket-mode", self.socketMode), ("socket-group", self.socketGroup),
            ("allow-uid", self.allowUID), ("backend", self.backend), ("mock-messages", self.mockMessages),
            ("mock-interval-ms", self.mockIntervalMs), ("mock-text", self.mockText), ("max-connections", self.maxConnections),
            ("max-handoff-bytes", self.maxHandoffBytes), ("handoff-timeout-ms", self.handoffTimeoutMs),
            ("write-timeout-s", self.writeTimeoutS), ("drain-timeout-s", self.drainTimeoutS),
            ("linger-ms", self.lingerMs), ("backlog", self.backlog), ("log-level", self.logLevel),
            ("metrics-address", self.metricsAddress), ("openai-base-url", self.openAIBaseURL), ("workers", self.workers), ("event-loops", self.eventLoops),
            ("data-dir", self.dataDir), ("max-attachment-bytes", self.maxAttachmentBytes),
            ("max-upstream-event-bytes", self.maxUpstreamEventBytes),
            ("openai-api-key", self.openAIAPIKey), ("openai-api-key-file", self.openAIAPIKeyFile),
            ("openai-model", self.openAIModel), ("upstream-http", self.upstreamHTTP),
            ("upstream-unix-socket", self.upstreamUnixSocket), ("upstream-insecure", self.upstreamInsecure ? "true" : nil),
            ("upstream-ca-file", self.upstreamCAFile), ("upstream-max-connections", self.upstreamMaxConnections),
            ("upstream-connect-timeout-ms", self.upstreamConnectTimeoutMs),
            ("upstream-first-byte-timeout-ms", self.upstreamFirstByteTimeoutMs),
            ("upstream-idle-timeout-s", self.upstreamIdleTimeoutS), ("max-stream-duration-s", self.maxStreamDurationS),
            ("keepalive-interval-s", self.keepAliveIntervalS), ("access-log", self.accessLog),
            ("redis-url", self.redisURL), ("resume-ttl-s", self.resumeTTLS), ("redis-key-prefix", self.redisKeyPrefix),
            ("completion-url", self.completionURL), ("completion-secret-file", self.completionSecretFile),
            ("completion-timeout-ms", self.completionTimeoutMs), ("completion-max-age-s", self.completionMaxAgeS),
        ]
        return Dictionary(uniqueKeysWithValues: pairs.compactMap { key, value in value.map { (key, $0) } })
    }

    func run() async throws {
        // Peers that vanish must never kill the process; every socket write handles EPIPE.
        signal(SIGPIPE, SIG_IGN)
        let environment = ProcessInfo.processInfo.environment
        let flags = self.givenFlags
        if self.exampleConfig {
            print(ConfigurationSource.exampleFile(), terminator: "")
            return
        }
        var configuration: DaemonConfiguration
        do {
            configuration = try ConfigurationSource.resolve(flags: flags, environment: environment)
        } catch {
            throw ValidationError(error.description)
        }
        if self.checkConfig {
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
