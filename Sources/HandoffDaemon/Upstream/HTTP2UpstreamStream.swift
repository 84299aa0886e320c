import NIOCore
import NIOHPACK
import NIOHTTP2

/// One request on an HTTP/2 connection: waits in its pool's queue, then becomes the handler of
/// its stream channel. It writes the request, reports the response to its delegate, and is the
/// ``UpstreamCall`` its owner cancels or pauses. Loop-bound.
///
/// A stream the server refused — `RST_STREAM(REFUSED_STREAM)`, or above a GOAWAY's last stream
/// id — was never processed, so it goes back to the pool once, for another connection, before
/// anything reached the client.
final class HTTP2UpstreamStream: ChannelInboundHandler, UpstreamCall {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private var request: UpstreamRequest?
    /// The request again, for one retry of a refused stream.
    private var retryRequest: UpstreamRequest?
    private var refused = false
    /// How the stream closed before any response, while a retry was still possible.
    private var closedBeforeResponse: UpstreamError?
    private var headStatus: Int?
    private var state: UpstreamCallState
    private let endpoint: UpstreamEndpoint
    private var context: ChannelHandlerContext?
    private var headReported = false
    /// The connection it runs on, once started.
    var connection: HTTP2UpstreamConnection?

    /// The pool that queued it, to queue it again after a refusal.
    weak var pool: HTTP2ConnectionPool?

    init(request: UpstreamRequest, delegate: any UpstreamResponseDelegate, endpoint: UpstreamEndpoint) {
        self.request = request
        self.retryRequest = request
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
        // The id exists once the HEADERS went out.
        context.channel.getOption(HTTP2StreamChannelOptions.streamID).assumeIsolated().whenSuccess { id in
            self.streamIDValue = Int(id)
        }
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
                self.headStatus = status
                self.retryRequest = nil
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
            if code == .refusedStream, self.mayRetry {
                self.refused = true
                return
            }
            self.state.finish(.failure(UpstreamError(.reset, "RST_STREAM \(code)")))
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let connection = self.connection
        self.connection = nil
        context.fireChannelInactive()
        guard self.mayRetry || self.refused, let connection, let pool = self.pool else {
            self.ended(on: connection, cancelledByUs: self.state.cancelled)
            return
        }
        // Ended before any response: NIOHTTP2 closes the streams a GOAWAY refuses before it
        // passes the GOAWAY on, so look again once the connection has seen it.
        let id = self.streamIDValue
        context.eventLoop.assumeIsolated().execute {
            let refused = self.refused || id.map(connection.serverRefused(streamID:)) == true
            guard refused, self.mayRetry || self.refused else {
                self.ended(on: connection, cancelledByUs: self.state.cancelled)
                return
            }
            // Never processed by the server: once more, on whatever connection has room.
            self.refused = false
            self.closedBeforeResponse = nil
            self.request = self.retryRequest
            self.retryRequest = nil
            self.context = nil
            self.streamIDValue = nil
            connection.streamEnded(resetByUs: false)
            pool.requeue(self)
        }
    }

    private func ended(on connection: HTTP2UpstreamConnection?, cancelledByUs: Bool) {
        self.state.finish(.failure(self.closedBeforeResponse ?? UpstreamError(.reset, "stream closed before its end")))
        // An error answer cancelled early is the server's doing, not a reset of a stream it served.
        connection?.streamEnded(resetByUs: cancelledByUs && (self.headStatus ?? 200) < 400)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let closed = error as? NIOHTTP2Errors.StreamClosed, self.mayRetry {
            // Closed before any response: refused outright, or perhaps by a GOAWAY that the
            // connection has not seen yet; channelInactive decides.
            if closed.errorCode == .refusedStream { self.refused = true }
            self.closedBeforeResponse = UpstreamError(.reset, "\(error)")
            return
        }
        if let closed = error as? NIOHTTP2Errors.StreamClosed, closed.errorCode != .cancel {
            self.connection?.streamFailed()
        }
        self.state.finish(.failure(UpstreamError(.reset, "\(error)")))
        context.close(promise: nil)
    }

    /// Refused before any response, cancelled by nobody, and not retried yet.
    private var mayRetry: Bool {
        !self.headReported && self.retryRequest != nil && !self.state.cancelled && !self.state.ended
    }

    private var streamIDValue: Int?
}
