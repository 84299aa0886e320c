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
                    if let tls {
                        let hostname = settings.endpoint.hostIsIPAddress ? nil : settings.endpoint.host
                        try sync.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: hostname))
                    }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(bound.value)
                }
            }
        let future: EventLoopFuture<any Channel>
        if let path = settings.endpoint.unixSocketPath {
            future = bootstrap.connect(unixDomainSocketPath: path)
        } else {
            future = bootstrap.connect(host: settings.endpoint.host, port: settings.endpoint.port)
        }
        future.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                counter.wrappingIncrement(ordering: .relaxed)
                channel.closeFuture.whenComplete { _ in counter.wrappingDecrement(ordering: .relaxed) }
            case .failure(let error):
                call.failBeforeStart(UpstreamError(UpstreamError.Kind(connectError: error), "\(settings.endpoint): \(error)"))
            }
        }
        return call
    }

    func shutdown() async {}

    var openConnections: Int { self.connectionCount.load(ordering: .relaxed) }
}

/// One HTTP/1.1 request on its own connection. Loop-bound.
final class HTTP1UpstreamCall: ChannelInboundHandler, UpstreamCall {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private var request: UpstreamRequest?
    private var delegate: (any UpstreamResponseDelegate)?
    private let endpoint: UpstreamEndpoint
    private var context: ChannelHandlerContext?
    private var ended = false
    private var cancelled = false

    init(request: UpstreamRequest, delegate: any UpstreamResponseDelegate, endpoint: UpstreamEndpoint) {
        self.request = request
        self.delegate = delegate
        self.endpoint = endpoint
    }

    func cancel() {
        guard !self.cancelled, !self.ended else { return }
        self.cancelled = true
        self.delegate = nil
        self.context?.close(promise: nil)
    }

    func setReading(_ reading: Bool) {
        guard let context = self.context else { return }
        context.channel.setOption(ChannelOptions.autoRead, value: reading).whenComplete { _ in }
        if reading { context.read() }
    }

    func failBeforeStart(_ error: UpstreamError) {
        self.end(.failure(error))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if self.cancelled { context.close(promise: nil) }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        guard let request = self.request, !self.cancelled else { return }
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
        guard !self.ended else { return }
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            guard head.status.code >= 200 else { return }
            self.delegate?.upstreamResponded(status: Int(head.status.code), headers: head.headers.map { ($0.name.lowercased(), $0.value) })
        case .body(let buffer):
            self.delegate?.upstreamReceived(buffer)
        case .end:
            self.end(.success(()))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.end(.failure(UpstreamError(.reset, "connection closed before the response ended")))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.end(.failure(UpstreamError(.reset, "\(error)")))
        context.close(promise: nil)
    }

    private func end(_ result: Result<Void, UpstreamError>) {
        guard !self.ended else { return }
        self.ended = true
        let delegate = self.delegate
        self.delegate = nil
        guard !self.cancelled, let delegate else { return }
        switch result {
        case .success: delegate.upstreamFinished()
        case .failure(let error): delegate.upstreamFailed(error)
        }
    }
}
