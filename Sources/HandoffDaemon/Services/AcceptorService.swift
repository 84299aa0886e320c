import ServiceLifecycle

/// Runs the handoff acceptor thread until graceful shutdown, then stops taking handoffs.
///
/// First in line at shutdown: new handoffs go to another instance (or the module retries and
/// answers 503) while running streams drain.
struct AcceptorService: Service {
    let acceptor: HandoffAcceptor
    let environment: StreamEnvironment

    func run() async throws {
        self.acceptor.start()
        try? await gracefulShutdown()
        self.environment.draining.store(true, ordering: .relaxed)
        self.environment.metrics.draining.set(1)
        self.acceptor.stop()
        await self.acceptor.waitUntilStopped()
    }
}
