import Atomics
import Logging
import NIOCore
import NIOSSL

/// HTTP/2 to one upstream: a small pool of connections per event loop, so a stream, its
/// upstream stream channel and its client channel share one loop and never hop threads.
final class HTTP2UpstreamTransport: UpstreamTransport {
    private let pools: [ObjectIdentifier: HTTP2ConnectionPool]
    private let connectionCount: ManagedAtomic<Int>

    init(settings: UpstreamSettings, eventLoops: [any EventLoop], logger: Logger) throws {
        let tls = try settings.makeTLSContext()
        let perLoop = max(1, (settings.maxConnections + eventLoops.count - 1) / eventLoops.count)
        let counter = ManagedAtomic(0)
        self.connectionCount = counter
        self.pools = Dictionary(
            uniqueKeysWithValues: eventLoops.map {
                (ObjectIdentifier($0), HTTP2ConnectionPool(eventLoop: $0, settings: settings, tls: tls, maxConnections: perLoop, connectionCount: counter, logger: logger))
            }
        )
    }

    func start(_ request: UpstreamRequest, on eventLoop: any EventLoop, delegate: any UpstreamResponseDelegate) -> any UpstreamCall {
        self.pools[ObjectIdentifier(eventLoop)]!.start(request, delegate: delegate)
    }

    func shutdown() async {
        for pool in self.pools.values {
            try? await pool.eventLoop.submit { pool.closeAll() }.get()
        }
    }

    var openConnections: Int { self.connectionCount.load(ordering: .relaxed) }

    /// Streams share pooled connections (counted in ``openConnections``).
    var descriptorsPerStream: Int { 0 }
}
