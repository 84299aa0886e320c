import Atomics
import HandoffWire
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
    /// Each loop's client connections, by loop index.
    let tables: [ClientTable]
    /// Client socket readiness for every loop.
    let watcher: ClientWatcher
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
    ) throws {
        let descriptorSlots = (try? Syscall.openFileLimit()).map { min($0, 1 << 20) } ?? 65536
        self.tables = eventLoops.enumerated().map { ClientTable(eventLoop: $1, index: $0, capacity: descriptorSlots) }
        self.watcher = try ClientWatcher(tables: self.tables, logger: logger)
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
