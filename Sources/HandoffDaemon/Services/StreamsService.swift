import Logging
import NIOCore
import ServiceLifecycle

/// Owns the running streams' lifecycle: at graceful shutdown it lets them finish up to the
/// drain timeout, then ends the rest with an `event: error`; on cancellation (a second
/// signal) it ends them at once.
struct StreamsService: Service {
    let environment: StreamEnvironment

    /// After ending streams, how long to wait for their final bytes and closes.
    static let endGrace: Duration = .seconds(3)

    func run() async throws {
        self.environment.watcher.start()
        defer { self.environment.watcher.stop() }
        try? await gracefulShutdown()
        let logger = self.environment.logger
        let capacity = self.environment.capacity
        if !Task.isCancelled, self.holdsClients {
            logger.info(
                "draining streams",
                metadata: [
                    "active": "\(capacity.activeStreams)", "clients": "\(capacity.heldClientDescriptors)",
                    "drain_timeout": "\(self.environment.configuration.timeouts.drain)",
                ]
            )
            await self.waitForStreams(upTo: self.environment.configuration.timeouts.drain)
        }
        let remaining = self.environment.capacity.activeStreams
        if remaining > 0 {
            logger.info("ending streams that outlived the drain", metadata: ["active": "\(remaining)"])
            for registry in self.environment.allRegistries {
                registry.eventLoop.execute { registry.endAll() }
            }
            await self.waitForDescriptors(upTo: Self.endGrace + self.environment.configuration.timeouts.linger)
        }
        self.environment.accessLog?.stop()
    }

    /// Whether a stream runs or a client is held: a handoff the acceptor took last may still
    /// be on its way to its loop (its descriptor counts from the acceptor on, its stream only
    /// once the loop starts it), and it is owed its whole stream like the others.
    private var holdsClients: Bool {
        self.environment.capacity.activeStreams > 0 || self.environment.capacity.heldClientDescriptors > 0
    }

    /// Polls until no stream runs and no client is held, the time is up, or the task is cancelled.
    private func waitForStreams(upTo limit: Duration) async {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        while self.holdsClients, clock.now < deadline, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    private func waitForDescriptors(upTo limit: Duration) async {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        while self.environment.capacity.heldClientDescriptors > 0, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
