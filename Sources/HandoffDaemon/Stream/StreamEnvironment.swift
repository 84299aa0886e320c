import Atomics
import CoreMetrics
import HandoffWire
import Logging
import NIOCore
import NIOPosix
import HandoffRequest

/// What every stream on every loop shares: configuration, counters, metrics, logger and the
/// per-loop registries. Immutable after start, so reading it needs no synchronisation.
final class StreamEnvironment: Sendable {
    let configuration: DaemonConfiguration
    let metrics: DaemonMetrics
    let logger: Logger
    let capacity: StreamCapacity
    let requestLimits: HandoffRequestLimits
    let backends: Backends
    /// For blocking work (reading attachments); never the event loops.
    let threadPool: NIOThreadPool
    /// Each loop's state (clients, streams, timers), by loop index.
    let loops: [EventLoopState]
    /// Client socket readiness for every loop.
    let watcher: ClientWatcher
    /// One line per finished stream, when the access log is on.
    let accessLog: AccessLog?
    /// Redis for resumable streams and channels, when configured.
    let redis: RedisServices?
    /// Completion callbacks, when configured.
    let completions: CompletionOutbox?
    /// Set when graceful shutdown begins; `/healthz` reports it.
    let draining = ManagedAtomic(false)

    init(
        configuration: DaemonConfiguration,
        metrics: DaemonMetrics,
        logger: Logger,
        capacity: StreamCapacity,
        backends: Backends,
        eventLoops: [any EventLoop],
        batcher: LoopBatcher?
    ) throws {
        let loops = eventLoops.enumerated().map { EventLoopState(index: $0, eventLoop: $1, restGate: batcher?.gate(for: $1)) }
        self.loops = loops
        self.watcher = try ClientWatcher(tables: self.loops.map(\.clients), batching: batcher?.batching, logger: logger)
        self.backends = backends
        let redis = try configuration.redis.map { try RedisServices(settings: $0, loops: loops, metrics: metrics.redis ?? RedisMetrics(factory: NOOPMetricsHandler.instance), logger: logger) }
        self.redis = redis
        self.completions = try configuration.completion.map {
            try CompletionOutbox(settings: $0, redis: redis, loop: loops[0], metrics: metrics.completion ?? CompletionMetrics(factory: NOOPMetricsHandler.instance), logger: logger)
        }
        self.threadPool = NIOThreadPool(numberOfThreads: 2)
        self.threadPool.start()
        self.accessLog = configuration.accessLog ? AccessLog() : nil
        self.accessLog?.start()
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        self.capacity = capacity
        var limits = HandoffRequestLimits()
        limits.attachments = configuration.attachments
        self.requestLimits = limits
    }

    /// Every loop's registry.
    var allRegistries: [StreamRegistry] { self.loops.map(\.registry) }
}
