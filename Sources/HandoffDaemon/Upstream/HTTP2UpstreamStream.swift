import HandoffHTTP2
import NIOCore
import NIOHPACK

/// One request on an HTTP/2 connection: waits in its pool's queue, then runs as a stream of a
/// ``HTTP2UpstreamConnection``, which hands it its frames (no channel per stream). It reports
/// the response to its delegate, and is the ``UpstreamCall`` its owner cancels or pauses.
/// Loop-bound.
///
/// A stream the server refused — `RST_STREAM(REFUSED_STREAM)`, or above a GOAWAY's last stream
/// id — was never processed, so it goes back to the pool once, for another connection, before
/// anything reached the client.
final class HTTP2UpstreamStream: UpstreamCall {
    private var request: UpstreamRequest?
    /// The request again, for one retry of a refused stream.
    private var retryRequest: UpstreamRequest?
    private var headStatus: Int?
    private var state: UpstreamCallState
    private var headReported = false
    /// Body bytes that arrived while the owner paused reading, delivered when it resumes.
    private var held = CircularBuffer<ByteBuffer>()
    private var endHeld = false
    private var reading = true
    /// The connection it runs on, and its id there, once started.
    private(set) var connection: HTTP2UpstreamConnection?
    private(set) var streamID: UInt32?

    /// The pool that queued it, to queue it again after a refusal.
    weak var pool: HTTP2ConnectionPool?

    init(request: UpstreamRequest, delegate: any UpstreamResponseDelegate) {
        self.request = request
        self.retryRequest = request
        self.state = UpstreamCallState(delegate: delegate)
    }

    /// Cancelled or finished while still queued: the pool skips it.
    var isAbandoned: Bool { self.state.cancelled || self.state.ended }

    // MARK: UpstreamCall

    func cancel() {
        guard self.state.cancel() else { return }
        self.held.removeAll()
        // RST_STREAM(CANCEL); the stream ends when the connection reports it closed.
        self.onConnection { $0.reset($1) }
    }

    func setReading(_ reading: Bool) {
        guard reading != self.reading else { return }
        self.reading = reading
        if reading {
            // What arrived while paused first; the owner may pause again on the way.
            while self.reading, !self.state.ended, let buffer = self.held.popFirst() {
                self.state.delegate?.upstreamReceived(buffer)
            }
            guard self.reading else { return }
            if self.endHeld { self.state.finish(.success(())) }
        }
        self.onConnection { $0.setReading(reading, on: $1) }
    }

    /// Runs `body` with the connection and the stream's id there, while it runs on one.
    private func onConnection(_ body: (HTTP2UpstreamConnection, UInt32) -> Void) {
        if let connection = self.connection, let id = self.streamID { body(connection, id) }
    }

    /// The pool could not start it.
    func failBeforeStart(_ error: UpstreamError) {
        self.state.finish(.failure(error))
    }

    // MARK: Running on a connection

    /// The fields every request to an endpoint carries, as header block pieces
    /// (``HPACKRequestEncoder``) encoded once: the pseudo-headers before `:path`, and the
    /// regular fields after it (pseudo-headers must come first).
    struct HeaderTemplate {
        let beforePath: ByteBuffer
        let afterPath: ByteBuffer

        /// `nil` if the endpoint's authority cannot be sent.
        init?(_ endpoint: UpstreamEndpoint) {
            var before = ByteBuffer()
            var after = ByteBuffer()
            // Every block starts with a table size update to 0: a server that lowered its
            // SETTINGS_HEADER_TABLE_SIZE requires one (RFC 7541 §4.2), and 0 fits any size.
            HPACKRequestEncoder.writeTableSizeUpdate(into: &before)
            guard HPACKRequestEncoder.write(name: ":method", value: "POST", into: &before),
                HPACKRequestEncoder.write(name: ":scheme", value: endpoint.tls ? "https" : "http", into: &before),
                HPACKRequestEncoder.write(name: ":authority", value: endpoint.authority, into: &before),
                HPACKRequestEncoder.write(name: "content-type", value: "application/json", into: &after),
                HPACKRequestEncoder.write(name: "accept", value: "text/event-stream", into: &after)
            else { return nil }
            self.beforePath = before
            self.afterPath = after
        }
    }

    /// `request`'s header block: `template`'s fields, its path, length and own headers; `nil` if
    /// one of them cannot be sent.
    static func headerBlock(for request: UpstreamRequest, template: HeaderTemplate) -> ByteBuffer? {
        var block = template.beforePath
        guard HPACKRequestEncoder.write(name: ":path", value: request.path, into: &block) else { return nil }
        block.writeImmutableBuffer(template.afterPath)
        guard HPACKRequestEncoder.write(name: "content-length", value: String(request.body.readableBytes), into: &block) else { return nil }
        for (name, value) in request.headers {
            guard HPACKRequestEncoder.write(name: name, value: value, into: &block) else { return nil }
        }
        return block
    }

    /// Started as stream `id` of `connection`: the request's header block (from `template`)
    /// and body, or `nil` (and the stream failed) if its headers cannot be sent.
    func started(on connection: HTTP2UpstreamConnection, as id: UInt32, template: HeaderTemplate) -> (ByteBuffer, ByteBuffer)? {
        guard let request = self.request else {
            self.failBeforeStart(UpstreamError(.connectFailed, "no request to send"))
            return nil
        }
        guard let block = Self.headerBlock(for: request, template: template) else {
            self.request = nil
            self.failBeforeStart(UpstreamError(.malformed, "a request header HTTP/2 cannot carry (a name that is not a lower-case token, or CR, LF or NUL in a value)"))
            return nil
        }
        self.request = nil
        self.connection = connection
        self.streamID = id
        return (block, request.body)
    }

    /// A HEADERS frame for this stream.
    func receivedHeaders(_ headers: HPACKHeaders, endStream: Bool) {
        guard !self.state.ended else { return }
        if !self.headReported {
            guard let status = headers.first(name: ":status").flatMap(Int.init) else {
                self.state.finish(.failure(UpstreamError(.malformed, "response without :status")))
                self.onConnection { $0.reset($1, code: .protocolError) }
                return
            }
            if (100..<200).contains(status) { return }
            self.headReported = true
            self.headStatus = status
            self.retryRequest = nil
            let fields = headers.filter { !$0.name.hasPrefix(":") }.map { ($0.name, $0.value) }
            self.state.delegate?.upstreamResponded(status: status, headers: fields)
        }
        if endStream { self.receivedEnd() }
    }

    /// A DATA frame's bytes for this stream.
    func receivedData(_ buffer: ByteBuffer, endStream: Bool) {
        guard !self.state.ended else { return }
        if buffer.readableBytes > 0 {
            if self.reading {
                self.state.delegate?.upstreamReceived(buffer)
            } else {
                self.held.append(buffer)
            }
        }
        if endStream { self.receivedEnd() }
    }

    private func receivedEnd() {
        if self.reading {
            self.state.finish(.success(()))
        } else {
            self.endHeld = true
        }
    }

    /// The stream closed (`reason` is the error code it closed with, if any). `refused`: the
    /// server never processed it (REFUSED_STREAM, or above a GOAWAY's last stream id).
    /// Returns whether it goes back to the pool for another try.
    func closed(reason: HTTP2ErrorCode?, refused: Bool) -> Bool {
        self.connection = nil
        self.streamID = nil
        if refused, self.mayRetry, let pool = self.pool {
            // Never processed by the server: once more, on whatever connection has room.
            self.request = self.retryRequest
            self.retryRequest = nil
            self.held.removeAll()
            self.endHeld = false
            pool.requeue(self)
            return true
        }
        if self.endHeld, !self.state.cancelled {
            return false  // ended well; the rest is delivered when the owner resumes
        }
        if let reason {
            self.state.finish(.failure(UpstreamError(.reset, "RST_STREAM \(reason)")))
        } else {
            self.state.finish(.failure(UpstreamError(.reset, "stream closed before its end")))
        }
        return false
    }

    /// Whether it was cancelled by us while the server served it (an error answer cancelled
    /// early does not count): such resets spend the connection's reset budget.
    var cancelledWhileServed: Bool {
        self.state.cancelled && (self.headStatus ?? 200) < 400
    }

    /// Refused before any response, cancelled by nobody, and not retried yet.
    var mayRetry: Bool {
        !self.headReported && self.retryRequest != nil && !self.state.cancelled && !self.state.ended
    }
}
