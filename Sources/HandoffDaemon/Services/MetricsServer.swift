import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// Serves `GET /metrics` (Prometheus text format) and `GET /healthz` on a loopback address.
///
/// The library does not know the metrics backend: the executable passes `render`, which
/// returns the exposition text. Last in line at shutdown, so the drain stays observable.
struct MetricsServer: Service {
    let host: String
    let port: Int
    let group: any EventLoopGroup
    let render: @Sendable () -> [UInt8]
    let health: @Sendable () -> HealthState
    let logger: Logger

    /// What `/healthz` reports.
    enum HealthState: Sendable {
        case serving
        case draining
    }

    func run() async throws {
        let render = self.render
        let health = self.health
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: self.group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(render: render, health: health))
                    }
                }
                .bind(host: self.host, port: self.port)
                .get()
        } catch {
            // Another instance (a restart overlapping a drain) may hold the port: keep serving
            // handoffs without metrics rather than refuse to start.
            self.logger.warning("metrics endpoint unavailable", metadata: ["address": "\(self.host):\(self.port)", "error": "\(error)"])
            try? await gracefulShutdown()
            return
        }
        self.logger.info("metrics endpoint listening", metadata: ["address": "\(self.host):\(self.port)"])
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

/// Answers one request per connection pass: `/metrics`, `/healthz`, else 404.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () -> [UInt8]
    private let health: @Sendable () -> MetricsServer.HealthState
    private var head: HTTPRequestHead?

    init(render: @escaping @Sendable () -> [UInt8], health: @escaping @Sendable () -> MetricsServer.HealthState) {
        self.render = render
        self.health = health
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let status: HTTPResponseStatus
        let contentType: String
        var body = context.channel.allocator.buffer(capacity: 256)
        switch (head.method, path) {
        case (.GET, "/metrics"):
            status = .ok
            contentType = "text/plain; version=0.0.4; charset=utf-8"
            body.writeBytes(self.render())
        case (.GET, "/healthz"):
            let state = self.health()
            status = state == .serving ? .ok : .serviceUnavailable
            contentType = "text/plain; charset=utf-8"
            body.writeString(state == .serving ? "ok\n" : "draining\n")
        default:
            status = .notFound
            contentType = "text/plain; charset=utf-8"
            body.writeString("not found\n")
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        let keepAlive = head.isKeepAlive
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
