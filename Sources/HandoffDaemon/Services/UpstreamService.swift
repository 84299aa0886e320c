import ServiceLifecycle

/// Closes upstream connections at shutdown, after the streams have drained.
struct UpstreamService: Service {
    let backends: Backends

    func run() async throws {
        try? await gracefulShutdown()
        await self.backends.shutdown()
    }
}
