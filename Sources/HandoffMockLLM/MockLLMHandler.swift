import Foundation
import NIOCore
import NIOHTTP1

/// Serves one HTTP/1.1 connection: each request becomes a ``MockExchange``.
final class MockLLMHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let configuration: MockLLMConfiguration
    private let stats: MockStats
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var exchange: MockExchange?

    init(configuration: MockLLMConfiguration, stats: MockStats) {
        self.configuration = configuration
        self.stats = stats
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = context.channel.allocator.buffer(capacity: 0)
        case .body(var chunk):
            guard let head = self.head else { return }
            guard (self.body?.readableBytes ?? 0) + chunk.readableBytes <= MockExchange.maximumBodyBytes else {
                let exchange = MockExchange(configuration: self.configuration, stats: self.stats, writer: MockHTTP1ResponseWriter(context: context, keepAlive: head.isKeepAlive))
                exchange.respond(status: 413, json: #"{"error":{"message":"body too large"}}"#)
                self.head = nil
                return
            }
            self.body?.writeBuffer(&chunk)
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            let body = self.body ?? context.channel.allocator.buffer(capacity: 0)
            self.body = nil
            let exchange = MockExchange(configuration: self.configuration, stats: self.stats, writer: MockHTTP1ResponseWriter(context: context, keepAlive: head.isKeepAlive))
            self.exchange = exchange
            exchange.serve(MockRequest(method: head.method.rawValue, uri: head.uri, headers: head.headers, body: body))
        }
    }

    /// A reader that stopped reading makes the channel unwritable: the stream waits, so memory
    /// stays bounded; it goes on once writable.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.exchange?.resumeIfWaiting() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.exchange?.cancel()
        // The exchange's writer holds the context, which holds this handler: let go of it.
        self.exchange = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
