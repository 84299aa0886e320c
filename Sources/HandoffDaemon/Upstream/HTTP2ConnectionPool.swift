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
    /// The last connection failed to connect, and none has become ready since.
    private var lastConnectFailed = false
    /// The fields every request carries, encoded once.
    let headerTemplate: HTTP2UpstreamStream.HeaderTemplate?

    /// Streams a connection is assumed to take before its SETTINGS arrive.
    static let assumedStreamsPerConnection = 100

    init(eventLoop: any EventLoop, settings: UpstreamSettings, tls: NIOSSLContext?, maxConnections: Int, connectionCount: ManagedAtomic<Int>, logger: Logger) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.tls = tls
        self.maxConnections = maxConnections
        self.connectionCount = connectionCount
        self.logger = logger
        self.headerTemplate = HTTP2UpstreamStream.HeaderTemplate(settings.endpoint)
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

    /// Opens the connections ``connectionsToOpen(waiting:room:perConnection:inUse:keepSpare:open:limit:)`` asks for.
    private func openConnectionsIfNeeded() {
        let waitingCount = self.waiting.reduce(0) { $0 + ($1.isAbandoned ? 0 : 1) }
        var perConnection = Self.assumedStreamsPerConnection
        var inUse = waitingCount > 0
        for connection in self.connections where !connection.isConnecting {
            perConnection = connection.maxStreams
            inUse = inUse || connection.activeStreams > 0
        }
        var room = 0
        for connection in self.connections {
            room += connection.isConnecting ? perConnection : connection.room
        }
        let count = Self.connectionsToOpen(
            waiting: waitingCount, room: room, perConnection: perConnection, inUse: inUse,
            keepSpare: !self.lastConnectFailed, open: self.connections.count, limit: self.maxConnections
        )
        for _ in 0..<count {
            let connection = HTTP2UpstreamConnection(pool: self)
            self.connections.append(connection)
            self.connectionCount.wrappingIncrement(ordering: .relaxed)
            connection.connect()
        }
    }

    /// How many connections to open: enough for the streams waiting, and, while the pool is in
    /// use, one ahead of demand once the room left falls under a fifth of a connection's
    /// streams. A steady ramp then never waits for a TCP and TLS handshake (at 1 000 streams
    /// a second, each new connection kept the streams that arrived during its handshake
    /// waiting milliseconds for their first byte). `room` counts a connection still
    /// connecting as `perConnection`. No spare after a failed connect (`keepSpare` false)
    /// until a connection is ready again, or a refusing upstream would be dialled in a loop.
    static func connectionsToOpen(waiting: Int, room: Int, perConnection: Int, inUse: Bool, keepSpare: Bool, open: Int, limit: Int) -> Int {
        guard inUse || waiting > 0 else { return 0 }
        let spare = keepSpare ? max(1, perConnection / 5) : 0
        let short = waiting + spare - room
        guard short > 0 else { return 0 }
        let perConnection = max(1, perConnection)
        return max(0, min((short + perConnection - 1) / perConnection, limit - open))
    }

    // MARK: Connection events

    /// A connection became ready: the upstream takes connections again.
    func connectionReady(_ connection: HTTP2UpstreamConnection) {
        self.lastConnectFailed = false
        self.dispatch()
    }

    /// A connection freed a slot (or its server allowed more streams).
    func connectionHasRoom(_ connection: HTTP2UpstreamConnection) {
        self.dispatch()
    }

    /// A connection closed (or failed to connect, with `error`).
    func connectionClosed(_ connection: HTTP2UpstreamConnection, error: UpstreamError?) {
        guard let index = self.connections.firstIndex(where: { $0 === connection }) else { return }
        self.connections.remove(at: index)
        self.connectionCount.wrappingDecrement(ordering: .relaxed)
        if error != nil { self.lastConnectFailed = true }
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
