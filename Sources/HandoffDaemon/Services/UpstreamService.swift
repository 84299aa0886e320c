import NIOPosix
import ServiceLifecycle

/// Closes upstream connections at shutdown, after the streams have drained.
struct UpstreamService: Service {
    let backends: Backends
    let threadPool: NIOThreadPool

    func run() async throws {
        try? await gracefulShutdown()
        await self.backends.shutdown()
        try? await self.threadPool.shutdownGracefully()
    }
}
