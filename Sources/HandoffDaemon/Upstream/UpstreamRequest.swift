import NIOCore

/// One request to the upstream: always a POST with a JSON body, answered with an event stream.
struct UpstreamRequest: Sendable {
    /// Path including the endpoint's prefix, e.g. `/v1/chat/completions`.
    var path: String
    /// Extra headers (authorization, x-test-pattern, …); lower-case names.
    var headers: [(String, String)]
    /// The JSON body.
    var body: ByteBuffer
}

/// What a transport reports about one request, on the request's event loop.
protocol UpstreamResponseDelegate: AnyObject {
    /// The response head arrived (1xx heads are not reported).
    func upstreamResponded(status: Int, headers: [(String, String)])
    /// Body bytes arrived.
    func upstreamReceived(_ body: ByteBuffer)
    /// The body ended normally.
    func upstreamFinished()
    /// The request failed; nothing more will be reported.
    func upstreamFailed(_ error: UpstreamError)
}

/// A request in flight, as its owner sees it. Loop-bound.
protocol UpstreamCall: AnyObject {
    /// Abandons the request at once: a waiting request leaves the queue, a running one is reset
    /// (RST_STREAM on HTTP/2, connection close on HTTP/1.1). No delegate call follows.
    func cancel()
    /// Stops (`false`) or resumes (`true`) reading the body, so a slow client slows the upstream.
    func setReading(_ reading: Bool)
}

/// Something that can run ``UpstreamRequest``s (an HTTP/2 pool, an HTTP/1.1 connector).
protocol UpstreamTransport: Sendable {
    /// Starts `request` on `eventLoop` (the client's loop); every delegate call happens there.
    func start(_ request: UpstreamRequest, on eventLoop: any EventLoop, delegate: any UpstreamResponseDelegate) -> any UpstreamCall
    /// Closes every connection.
    func shutdown() async
    /// Open upstream connections (counted from the connect on: each holds a descriptor).
    var openConnections: Int { get }
    /// Descriptors one more stream opens: 1 where each stream has its own connection.
    var descriptorsPerStream: Int { get }
}
