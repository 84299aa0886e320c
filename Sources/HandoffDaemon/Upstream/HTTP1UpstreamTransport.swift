import Atomics
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// HTTP/1.1 to one upstream: one connection per stream (TCP, TLS or a Unix socket), closed
/// when the stream ends. For upstreams that do not speak HTTP/2 (many local model servers).
final class HTTP1UpstreamTransport: UpstreamTransport {
    private let settings: UpstreamSettings
    private let tls: NIOSSLContext?
    private let connectionCount = ManagedAtomic(0)

    init(settings: UpstreamSettings) throws {
        self.settings = settings
        self.tls = try settings.makeTLSContext()
    }

    func start(_ request: UpstreamRequest, on eventLoop: any EventLoop, delegate: any UpstreamResponseDelegate) -> any UpstreamCall {
        let call = HTTP1UpstreamCall(request: request, delegate: delegate, endpoint: self.settings.endpoint)
        let bound = NIOLoopBound(call, eventLoop: eventLoop)
        let settings = self.settings
        let tls = self.tls
        let counter = self.connectionCount
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(settings.connectTimeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try settings.addTLSHandler(tls, to: sync)
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(bound.value)
                }
            }
        // Counted from the connect on: the socket holds a descriptor from then.
        counter.wrappingIncrement(ordering: .relaxed)
        settings.connect(bootstrap).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                channel.closeFuture.whenComplete { _ in counter.wrappingDecrement(ordering: .relaxed) }
            case .failure(let error):
                counter.wrappingDecrement(ordering: .relaxed)
                call.failBeforeStart(UpstreamError(UpstreamError.Kind(connectError: error), "\(settings.endpoint): \(error)"))
            }
        }
        return call
    }

    func shutdown() async {}

    var openConnections: Int { self.connectionCount.load(ordering: .relaxed) }

    var descriptorsPerStream: Int { 1 }
}

/// One HTTP/1.1 request on its own connection. Loop-bound.
final class HTTP1UpstreamCall: ChannelInboundHandler, UpstreamCall {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private var request: UpstreamRequest?
    private var state: UpstreamCallState
    private let endpoint: UpstreamEndpoint
    private var context: ChannelHandlerContext?

    init(request: UpstreamRequest, delegate: any UpstreamResponseDelegate, endpoint: UpstreamEndpoint) {
        self.request = request
        self.state = UpstreamCallState(delegate: delegate)
        self.endpoint = endpoint
    }

    func cancel() {
        guard self.state.cancel() else { return }
        self.context?.close(promise: nil)
    }

    func setReading(_ reading: Bool) {
        guard let context = self.context else { return }
        context.channel.setOption(ChannelOptions.autoRead, value: reading).whenComplete { _ in }
        if reading { context.read() }
    }

    func failBeforeStart(_ error: UpstreamError) {
        self.state.finish(.failure(error))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if self.state.cancelled { context.close(promise: nil) }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        guard let request = self.request, !self.state.cancelled else { return }
        self.request = nil
        var headers = HTTPHeaders()
        headers.add(name: "host", value: self.endpoint.authority)
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "accept", value: "text/event-stream")
        headers.add(name: "content-length", value: String(request.body.readableBytes))
        headers.add(name: "connection", value: "close")
        for (name, value) in request.headers { headers.add(name: name, value: value) }
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: request.path, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(request.body))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.state.ended else { return }
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            guard head.status.code >= 200 else { return }
            self.state.delegate?.upstreamResponded(status: Int(head.status.code), headers: head.headers.map { ($0.name.lowercased(), $0.value) })
        case .body(let buffer):
            self.state.delegate?.upstreamReceived(buffer)
        case .end:
            self.state.finish(.success(()))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.state.finish(.failure(UpstreamError(.reset, "connection closed before the response ended")))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.state.finish(.failure(UpstreamError(.reset, "\(error)")))
        context.close(promise: nil)
    }
}
