import Atomics
import Logging
import NIOCore

/// What every stream on every loop shares: configuration, counters, metrics, logger and the
/// per-loop registries. Immutable after start, so reading it needs no synchronisation.
final class StreamEnvironment: Sendable {
    let configuration: DaemonConfiguration
    let metrics: DaemonMetrics
    let logger: Logger
    let capacity: StreamCapacity
    let requestLimits: HandoffRequestLimits
    let backends: Backends
    /// One line per finished stream, when the access log is on.
    let accessLogger: Logger?
    /// Set when graceful shutdown begins; `/healthz` reports it.
    let draining = ManagedAtomic(false)
    private let registries: [ObjectIdentifier: StreamRegistry]

    init(
        configuration: DaemonConfiguration,
        metrics: DaemonMetrics,
        logger: Logger,
        capacity: StreamCapacity,
        backends: Backends,
        eventLoops: [any EventLoop]
    ) {
        self.backends = backends
        self.accessLogger = configuration.accessLog ? Logger(label: "handoffd.access") : nil
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        self.capacity = capacity
        self.requestLimits = HandoffRequestLimits()
        self.registries = Dictionary(uniqueKeysWithValues: eventLoops.map { (ObjectIdentifier($0), StreamRegistry(eventLoop: $0)) })
    }

    /// The registry of `eventLoop`, which must be one of the daemon's loops.
    func registry(for eventLoop: any EventLoop) -> StreamRegistry {
        self.registries[ObjectIdentifier(eventLoop)]!
    }

    /// Every loop's registry.
    var allRegistries: [StreamRegistry] { Array(self.registries.values) }
}
