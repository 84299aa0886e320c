import NIOCore
import NIOHPACK
import NIOHTTP2

/// One request on an HTTP/2 connection: waits in its pool's queue, then becomes the handler of
/// its stream channel. It writes the request, reports the response to its delegate, and is the
/// ``UpstreamCall`` its owner cancels or pauses. Loop-bound.
final class HTTP2UpstreamStream: ChannelInboundHandler, UpstreamCall {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private var request: UpstreamRequest?
    private var state: UpstreamCallState
    private let endpoint: UpstreamEndpoint
    private var context: ChannelHandlerContext?
    private var headReported = false
    /// The connection it runs on, once started.
    var connection: HTTP2UpstreamConnection?

    init(request: UpstreamRequest, delegate: any UpstreamResponseDelegate, endpoint: UpstreamEndpoint) {
        self.request = request
        self.state = UpstreamCallState(delegate: delegate)
        self.endpoint = endpoint
    }

    /// Cancelled or finished while still queued: the pool skips it.
    var isAbandoned: Bool { self.state.cancelled || self.state.ended }

    // MARK: UpstreamCall

    func cancel() {
        guard self.state.cancel() else { return }
        // Closing an open stream channel sends RST_STREAM(CANCEL).
        self.context?.close(promise: nil)
    }

    func setReading(_ reading: Bool) {
        guard let context = self.context else { return }
        context.channel.setOption(ChannelOptions.autoRead, value: reading).whenComplete { _ in }
        if reading { context.read() }
    }

    /// The pool could not start it.
    func failBeforeStart(_ error: UpstreamError) {
        self.state.finish(.failure(error))
    }

    // MARK: Channel

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if self.state.cancelled {
            context.close(promise: nil)
            return
        }
        if context.channel.isActive { self.sendRequest(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.sendRequest(context: context)
        context.fireChannelActive()
    }

    private func sendRequest(context: ChannelHandlerContext) {
        guard let request = self.request else { return }
        self.request = nil
        var headers = HPACKHeaders()
        headers.reserveCapacity(8 + request.headers.count)
        headers.add(name: ":method", value: "POST")
        headers.add(name: ":scheme", value: self.endpoint.tls ? "https" : "http")
        headers.add(name: ":authority", value: self.endpoint.authority)
        headers.add(name: ":path", value: request.path)
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "accept", value: "text/event-stream")
        headers.add(name: "content-length", value: String(request.body.readableBytes))
        for (name, value) in request.headers { headers.add(name: name, value: value) }
        context.write(self.wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.data(.init(data: .byteBuffer(request.body), endStream: true))), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.state.ended else { return }
        switch self.unwrapInboundIn(data) {
        case .headers(let headers):
            if !self.headReported {
                guard let status = headers.headers.first(name: ":status").flatMap(Int.init) else {
                    self.state.finish(.failure(UpstreamError(.malformed, "response without :status")))
                    return
                }
                if (100..<200).contains(status) { return }
                self.headReported = true
                let fields = headers.headers.filter { !$0.name.hasPrefix(":") }.map { ($0.name, $0.value) }
                self.state.delegate?.upstreamResponded(status: status, headers: fields)
            }
            if headers.endStream { self.state.finish(.success(())) }
        case .data(let data):
            if case .byteBuffer(let buffer) = data.data, buffer.readableBytes > 0 {
                self.state.delegate?.upstreamReceived(buffer)
            }
            if data.endStream { self.state.finish(.success(())) }
        case .rstStream(let code):
            self.state.finish(.failure(UpstreamError(.reset, "RST_STREAM \(code)")))
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.state.finish(.failure(UpstreamError(.reset, "stream closed before its end")))
        self.connection?.streamEnded(reset: self.state.cancelled)
        self.connection = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.state.finish(.failure(UpstreamError(.reset, "\(error)")))
        context.close(promise: nil)
    }
}
