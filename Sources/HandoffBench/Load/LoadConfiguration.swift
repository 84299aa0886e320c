/// What one load run does. The same configuration drives one worker process or, split with
/// ``forWorker(_:of:)``, several.
public struct LoadConfiguration: Sendable, Codable {
    /// How a stream reaches the daemon.
    public enum Target: Sendable, Codable, Equatable {
        /// Play Apache: a client socket (socketpair or loopback TCP), one SEQPACKET connection per
        /// handoff, payload and descriptor in one `sendmsg`.
        case handoff(socketPath: String, client: ClientKind)
        /// Drive a real Apache: POST `body` to `host:port` `path` over HTTP/1.1.
        case http(host: String, port: Int, path: String)
    }

    /// The client end of a handed-off connection.
    public enum ClientKind: String, Sendable, Codable, CaseIterable {
        case socketpair
        case tcp
    }

    public var target: Target
    /// Concurrent streams (one-shot: started over ``rampUp``; sustained: kept running).
    public var connections: Int
    /// Time over which the one-shot run starts its streams, evenly.
    public var rampUp: Duration
    /// Sustained: how long to keep the load. One-shot: how long to wait after the ramp for the
    /// streams to finish.
    public var hold: Duration
    /// A stream taking longer than this fails as a timeout.
    public var streamTimeout: Duration
    /// Closed loop: each finished stream starts a new one until ``hold`` ends.
    public var sustained: Bool
    /// The handoff JSON (handoff target) or the request body (http target).
    public var payload: [UInt8]
    /// Content events a complete stream has; `nil` accepts any count.
    public var expectedEvents: Int?
    /// Ask for the acknowledged handoff and wait this many milliseconds for it, as the module
    /// does with `SocketHandoffAck On`; `nil` hands off the original way.
    public var ackTimeoutMilliseconds: Int?
    /// A file that will hold a `CLOCK_MONOTONIC` time in nanoseconds (written by whoever
    /// triggers the events, e.g. a PUBLISH): first content is then also recorded as
    /// `after_mark`, the delay from that moment, across every process of the run.
    public var markFile: String?

    public init(
        target: Target,
        connections: Int,
        rampUp: Duration = .zero,
        hold: Duration = .seconds(30),
        streamTimeout: Duration = .seconds(60),
        sustained: Bool = false,
        payload: [UInt8],
        expectedEvents: Int? = nil,
        ackTimeoutMilliseconds: Int? = nil
    ) {
        self.ackTimeoutMilliseconds = ackTimeoutMilliseconds
        self.target = target
        self.connections = connections
        self.rampUp = rampUp
        self.hold = hold
        self.streamTimeout = streamTimeout
        self.sustained = sustained
        self.payload = payload
        self.expectedEvents = expectedEvents
    }

    /// The share of worker `index` (0-based) of `count` processes: connections split evenly.
    public func forWorker(_ index: Int, of count: Int) -> LoadConfiguration {
        var copy = self
        copy.connections = self.connections / count + (index < self.connections % count ? 1 : 0)
        return copy
    }
}
