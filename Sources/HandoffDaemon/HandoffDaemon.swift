import HandoffWire
public import Logging
public import CoreMetrics
import NIOCore
public import NIOPosix
import ServiceLifecycle

/// handoffd as a library: binds the handoff socket, then runs the acceptor and the streams as
/// services in one `ServiceGroup`. The executable and the tests both build it with
/// ``init(configuration:logger:metricsFactory:eventLoopGroup:)`` and call ``run()``.
public final class HandoffDaemon: Sendable {
    /// The validated configuration.
    public let configuration: DaemonConfiguration
    /// The socket path handoffs arrive on.
    public var socketPath: String { self.configuration.listener.socketPath }

    private let group: MultiThreadedEventLoopGroup
    private let ownsGroup: Bool
    private let environment: StreamEnvironment
    private let serviceGroup: ServiceGroup
    private let acceptor: HandoffAcceptor

    /// Validates `configuration` and binds the socket, so the daemon is reachable when this
    /// returns (connections wait in the backlog until ``run()`` starts accepting).
    ///
    /// - Parameters:
    ///   - configuration: what to serve and how.
    ///   - logger: the daemon's logger.
    ///   - metricsFactory: where metrics go; the global one by default.
    ///   - eventLoopGroup: the loops streams run on; one per core when `nil`.
    ///   - renderMetrics: the metrics exposition text for `/metrics` (the executable passes
    ///     Prometheus's); without it `/metrics` is empty.
    ///   - signals: SIGTERM/SIGINT start a graceful shutdown; off for tests. (The executable
    ///     handles a second signal with ``endAllStreamsNow()``.)
    public convenience init(
        configuration: DaemonConfiguration,
        logger: Logger,
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        eventLoopGroup: MultiThreadedEventLoopGroup? = nil,
        renderMetrics: @escaping @Sendable () -> [UInt8] = { [] },
        signals: Bool = false
    ) throws {
        try self.init(
            configuration: configuration, logger: logger, metricsFactory: metricsFactory,
            eventLoops: eventLoopGroup.map { ($0, nil) }, renderMetrics: renderMetrics, signals: signals
        )
    }

    /// As above; `eventLoops` may come with the ``LoopBatcher`` that batches them (tests).
    init(
        configuration: DaemonConfiguration,
        logger: Logger,
        metricsFactory: any MetricsFactory,
        eventLoops: (MultiThreadedEventLoopGroup, LoopBatcher?)?,
        renderMetrics: @escaping @Sendable () -> [UInt8],
        signals: Bool
    ) throws {
        try configuration.validate()
        self.configuration = configuration
        self.ownsGroup = eventLoops == nil
        let batcher: LoopBatcher?
        (self.group, batcher) = eventLoops ?? Self.makeEventLoops(configuration)

        let listener: SeqpacketListener
        if let inherited = configuration.listener.inheritedDescriptor {
            listener = try SeqpacketListener.adopt(
                descriptor: inherited,
                path: configuration.listener.socketPath,
                ownsPath: configuration.listener.ownsInheritedPath
            )
        } else {
            listener = try SeqpacketListener.bind(
                path: configuration.listener.socketPath,
                mode: configuration.listener.socketMode,
                group: configuration.listener.socketGroup,
                backlog: configuration.listener.backlog
            )
        }

        let descriptorRoom = try Self.clientDescriptorRoom(reserved: configuration.limits.reservedDescriptors)
        let metrics = DaemonMetrics(factory: metricsFactory, redis: configuration.redis != nil, completion: configuration.completion != nil)
        let loops = Array(self.group.makeIterator())
        let backends = try Backends(configuration: configuration, eventLoops: loops, logger: logger)
        let capacity = StreamCapacity(
            maximumStreams: configuration.limits.maxConnections ?? descriptorRoom,
            maximumDescriptors: descriptorRoom,
            upstreamDescriptors: { backends.openConnections }
        )
        metrics.maxStreams.set(capacity.maximumStreams)
        self.environment = try StreamEnvironment(
            configuration: configuration,
            metrics: metrics,
            logger: logger,
            capacity: capacity,
            backends: backends,
            eventLoops: loops,
            batcher: batcher
        )
        let launcher = StreamLauncher(environment: self.environment)
        self.listenerDescriptor = listener.rawDescriptor
        self.ownsSocketPath = listener.ownsPath
        let acceptor = try HandoffAcceptor(
            listener: listener,
            configuration: configuration,
            capacity: capacity,
            metrics: metrics,
            logger: logger,
            dispatch: { launcher.launch($0) }
        )
        self.acceptor = acceptor
        // Shutdown runs in reverse: stop taking handoffs, then drain streams.
        var services: [any Service] = []
        if let address = configuration.metricsAddress {
            let environment = self.environment
            services.append(
                MetricsServer(
                    host: address.host,
                    port: address.port,
                    group: self.group,
                    render: renderMetrics,
                    health: { environment.draining.load(ordering: .relaxed) ? .draining : .serving },
                    logger: logger
                )
            )
        }
        services.append(UpstreamService(backends: backends, redis: self.environment.redis, completions: self.environment.completions, threadPool: self.environment.threadPool))
        services.append(StreamsService(environment: self.environment))
        services.append(AcceptorService(acceptor: acceptor, environment: self.environment))
        self.serviceGroup = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: signals ? [.sigterm, .sigint] : [],
                logger: logger
            )
        )
        logger.info(
            "handoffd listening",
            metadata: [
                "socket": "\(configuration.listener.socketPath)",
                "backend": "\(configuration.defaultBackend.rawValue)",
                "max_connections": "\(capacity.maximumStreams)",
                "client_fd_room": "\(descriptorRoom)",
            ]
        )
    }

    /// Runs until graceful shutdown completes (a signal, or ``triggerGracefulShutdown()``).
    public func run() async throws {
        let result: Result<Void, any Error>
        do {
            try await self.serviceGroup.run()
            result = .success(())
        } catch {
            result = .failure(error)
        }
        if self.ownsGroup { try? await self.group.shutdownGracefully() }
        try result.get()
    }

    /// Stops taking handoffs, lets streams drain up to the drain timeout, then returns from ``run()``.
    public func triggerGracefulShutdown() async {
        await self.serviceGroup.triggerGracefulShutdown()
    }

    /// Hands the socket over to a successor that shares it (a reload): stops accepting without
    /// taking the queued handoffs (the successor takes them) and without unlinking the path,
    /// then drains like ``triggerGracefulShutdown()``.
    public func retire() async {
        self.acceptor.leaveBacklogToSuccessor()
        await self.serviceGroup.triggerGracefulShutdown()
    }

    /// Whether the acceptor thread is taking handoffs (a successor reports ready after this).
    public var isAccepting: Bool { self.acceptor.isRunning }

    /// The listening descriptor, to share with a successor (owned by the acceptor, open until
    /// it stops).
    public let listenerDescriptor: CInt

    /// Whether this daemon owns the socket path (and so unlinks it when it stops).
    public let ownsSocketPath: Bool

    /// Ends every running stream at once with an `event: error` (a forced shutdown), and
    /// returns when their connections are closed or after `grace`.
    public func endAllStreamsNow(grace: Duration = .seconds(1)) async {
        for registry in self.environment.allRegistries {
            registry.eventLoop.execute { registry.endAll() }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while self.environment.capacity.heldClientDescriptors > 0, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        self.environment.accessLog?.stop()
    }

    /// Open upstream connections (all backends).
    public var upstreamConnections: Int { self.environment.backends.openConnections }

    /// Streams running now.
    public var activeStreams: Int { self.environment.capacity.activeStreams }

    /// Client descriptors the daemon holds now (streams and connections being answered).
    public var heldClientDescriptors: Int { self.environment.capacity.heldClientDescriptors }

    /// Timers pending on every loop's wheel (each holds its stream or source).
    func pendingTimers() async throws -> Int {
        var total = 0
        for loop in self.environment.loops {
            total += try await loop.eventLoop.submit { loop.wheel.entries }.get()
        }
        return total
    }

    /// The daemon's own loops (``DaemonConfiguration/eventLoops``, one per core by default),
    /// batching wake-ups under load, with the batcher that does it, when
    /// ``DaemonConfiguration/loopBatchWindow`` is above zero. Not validated here: tests use
    /// longer windows than an operator may set.
    static func makeEventLoops(_ configuration: DaemonConfiguration) -> (MultiThreadedEventLoopGroup, LoopBatcher?) {
        let threads = configuration.eventLoops ?? System.coreCount
        guard configuration.loopBatchWindow > .zero else { return (MultiThreadedEventLoopGroup(numberOfThreads: threads), nil) }
        let batcher = LoopBatcher(window: configuration.loopBatchWindow)
        return (MultiThreadedEventLoopGroup(numberOfThreads: threads, metricsDelegate: batcher), batcher)
    }

    /// How many client descriptors fit under the open-file limit, after what is open now
    /// (counted from `/proc/self/fd`) and `reserved` for everything else.
    static func clientDescriptorRoom(reserved: Int) throws -> Int {
        let limit = try Syscall.openFileLimit()
        let open = OpenDescriptors.count()
        return max(0, limit - open - reserved)
    }
}
