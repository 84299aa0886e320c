import Atomics
import Logging
import NIOCore
import NIOSSL

/// The HTTP/2 connections of one event loop to one upstream.
///
/// Streams go to the busiest ready connection that still has room under the server's
/// `MAX_CONCURRENT_STREAMS` (few connections), and a new connection is opened only when the
/// waiting streams exceed what ready and connecting connections can take. A connection that
/// received GOAWAY, or spent its reset budget, takes no new streams and closes when idle.
// @unchecked Sendable: all state is touched only on `eventLoop` (asserted); the transport
// only hands calls to it on that loop.
final class HTTP2ConnectionPool: @unchecked Sendable {
    let eventLoop: any EventLoop
    let settings: UpstreamSettings
    let tls: NIOSSLContext?
    let logger: Logger
    private let maxConnections: Int
    private let connectionCount: ManagedAtomic<Int>
    private var connections: [HTTP2UpstreamConnection] = []
    private var waiting = CircularBuffer<HTTP2UpstreamStream>()

    /// Streams a connection is assumed to take before its SETTINGS arrive.
    static let assumedStreamsPerConnection = 100

    init(eventLoop: any EventLoop, settings: UpstreamSettings, tls: NIOSSLContext?, maxConnections: Int, connectionCount: ManagedAtomic<Int>, logger: Logger) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.tls = tls
        self.maxConnections = maxConnections
        self.connectionCount = connectionCount
        self.logger = logger
    }

    func start(_ request: UpstreamRequest, delegate: any UpstreamResponseDelegate) -> any UpstreamCall {
        self.eventLoop.assertInEventLoop()
        let stream = HTTP2UpstreamStream(request: request, delegate: delegate)
        stream.pool = self
        self.waiting.append(stream)
        self.dispatch()
        return stream
    }

    /// A stream the server refused without processing it, for one more try: first in line.
    func requeue(_ stream: HTTP2UpstreamStream) {
        self.eventLoop.assertInEventLoop()
        self.waiting.prepend(stream)
        self.dispatch()
    }

    /// Gives waiting streams to connections with room; opens connections when needed.
    func dispatch() {
        while let stream = self.waiting.first {
            if stream.isAbandoned {
                self.waiting.removeFirst()
                continue
            }
            guard let connection = self.connectionWithRoom() else { break }
            self.waiting.removeFirst()
            connection.open(stream)
        }
        self.openConnectionsIfNeeded()
    }

    private func connectionWithRoom() -> HTTP2UpstreamConnection? {
        var best: HTTP2UpstreamConnection?
        for connection in self.connections where connection.canTakeStream {
            if best == nil || connection.activeStreams > best!.activeStreams { best = connection }
        }
        return best
    }

    /// Opens connections for the streams waiting, plus one ahead of demand once the room left
    /// falls under a fifth of a connection's streams: a steady ramp then never waits for a TCP
    /// and TLS handshake (at 1 000 streams a second, each new connection kept the streams that
    /// arrived during its handshake waiting milliseconds for their first byte).
    private func openConnectionsIfNeeded() {
        let waitingCount = self.waiting.reduce(0) { $0 + ($1.isAbandoned ? 0 : 1) }
        var room = 0
        var inUse = waitingCount > 0
        var perConnection = Self.assumedStreamsPerConnection
        for connection in self.connections {
            if connection.isConnecting {
                room += Self.assumedStreamsPerConnection
            } else {
                room += connection.room
                perConnection = connection.maxStreams
                inUse = inUse || connection.activeStreams > 0
            }
        }
        guard inUse else { return }
        let spare = max(1, perConnection / 5)
        var needed = waitingCount + spare - room
        while needed > 0, self.connections.count < self.maxConnections {
            let connection = HTTP2UpstreamConnection(pool: self)
            self.connections.append(connection)
            self.connectionCount.wrappingIncrement(ordering: .relaxed)
            connection.connect()
            needed -= Self.assumedStreamsPerConnection
        }
    }

    // MARK: Connection events

    /// A connection became ready or freed a slot.
    func connectionHasRoom(_ connection: HTTP2UpstreamConnection) {
        self.dispatch()
    }

    /// A connection closed (or failed to connect, with `error`).
    func connectionClosed(_ connection: HTTP2UpstreamConnection, error: UpstreamError?) {
        guard let index = self.connections.firstIndex(where: { $0 === connection }) else { return }
        self.connections.remove(at: index)
        self.connectionCount.wrappingDecrement(ordering: .relaxed)
        if let error, !self.connections.contains(where: { $0.isConnecting || $0.canTakeStream }) {
            // Nothing can serve the queue now: fail it rather than let it wait for a timeout.
            let failed = self.waiting
            self.waiting.removeAll()
            for stream in failed where !stream.isAbandoned { stream.failBeforeStart(error) }
        }
        self.dispatch()
    }

    /// Closes every connection (shutdown).
    func closeAll() {
        for stream in self.waiting where !stream.isAbandoned {
            stream.failBeforeStart(UpstreamError(.goingAway, "shutting down"))
        }
        self.waiting.removeAll()
        for connection in self.connections { connection.close() }
    }
}
