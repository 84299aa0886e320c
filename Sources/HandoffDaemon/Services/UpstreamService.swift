import NIOPosix
import ServiceLifecycle

/// Closes upstream (and Redis) connections at shutdown, after the streams have drained.
struct UpstreamService: Service {
    let backends: Backends
    let redis: RedisServices?
    let completions: CompletionOutbox?
    let threadPool: NIOThreadPool

    func run() async throws {
        try? await gracefulShutdown()
        await self.backends.shutdown()
        await self.completions?.shutdown()
        await self.redis?.shutdown()
        try? await self.threadPool.shutdownGracefully()
    }
}
