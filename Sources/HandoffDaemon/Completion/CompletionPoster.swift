import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP/1.1 POST of a callback document on its own connection: resolves to the
/// receiver's status code, or fails (connect error, TLS error, no response head in time).
enum CompletionPoster {
    static func post(
        _ body: ByteBuffer,
        headers extra: [(String, String)],
        to endpoint: UpstreamEndpoint,
        tls: NIOSSLContext?,
        on eventLoop: any EventLoop,
        timeout: TimeAmount
    ) -> EventLoopFuture<Int> {
        let promise = eventLoop.makePromise(of: Int.self)
        let deadline = eventLoop.scheduleTask(in: timeout) {
            promise.fail(CompletionPostError(message: "no response within \(timeout.nanoseconds / 1_000_000) ms"))
        }
        promise.futureResult.whenComplete { _ in deadline.cancel() }
        let host = endpoint.host
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        let sni = host.first?.isNumber == true || host.contains(":") ? nil : host
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: sni))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(StatusHandler(promise: promise))
                }
            }
        bootstrap.connect(host: endpoint.host, port: endpoint.port).whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(CompletionPostError(message: "connecting to \(endpoint) failed: \(error)"))
            case .success(let channel):
                promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
                var headers = HTTPHeaders()
                let defaultPort = endpoint.tls ? 443 : 80
                headers.add(name: "Host", value: endpoint.port == defaultPort ? Self.hostHeader(endpoint.host) : "\(Self.hostHeader(endpoint.host)):\(endpoint.port)")
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: String(body.readableBytes))
                headers.add(name: "User-Agent", value: "handoffd")
                headers.add(name: "Connection", value: "close")
                for (name, value) in extra { headers.add(name: name, value: value) }
                let path = endpoint.pathPrefix.isEmpty ? "/" : endpoint.pathPrefix
                let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)
                channel.write(HTTPClientRequestPart.head(head), promise: nil)
                channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            }
        }
        return promise.futureResult
    }

    private static func hostHeader(_ host: String) -> String {
        host.contains(":") ? "[\(host)]" : host
    }

    private final class StatusHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        private let promise: EventLoopPromise<Int>

        init(promise: EventLoopPromise<Int>) {
            self.promise = promise
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head(let head) = Self.unwrapInboundIn(data) {
                self.promise.succeed(Int(head.status.code))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.promise.fail(CompletionPostError(message: "the receiver closed without a response"))
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            self.promise.fail(CompletionPostError(message: "\(error)"))
            context.close(promise: nil)
        }
    }
}

struct CompletionPostError: Error, CustomStringConvertible {
    var message: String
    var description: String { self.message }
}
