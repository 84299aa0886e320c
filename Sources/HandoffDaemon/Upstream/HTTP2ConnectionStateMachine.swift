import NIOCore

/// One upstream HTTP/2 connection's life as a pure state machine: how many streams it may take
/// (the server's `MAX_CONCURRENT_STREAMS`), GOAWAY, the reset budget, and PING keep-alive.
/// ``HTTP2UpstreamConnection`` feeds it events and performs the actions it returns.
struct HTTP2ConnectionStateMachine {
    enum State: Equatable {
        case connecting
        case ready
        /// GOAWAY received or reset budget spent: running streams finish, no new ones.
        case retiring
        case closed
    }

    /// What the connection does next.
    enum Action: Equatable {
        case none
        /// Offer the pool's waiting streams to this connection.
        case offerRoom
        /// The connection became ready: offer room and start the PING timer.
        case startPingsAndOfferRoom
        /// Close the connection (nothing runs on it any more, or it stopped answering).
        case close(reason: String)
        /// Send a PING and schedule the next check.
        case sendPingAndReschedule
        /// Schedule the next check.
        case reschedulePing
    }

    private(set) var state = State.connecting
    /// Streams the server lets this connection run at once.
    private(set) var maxStreams: Int
    private(set) var activeStreams = 0
    /// The GOAWAY's last stream id: streams above it were never processed by the server.
    private(set) var lastProcessedStreamID: Int?
    private var resets: CircularBuffer<NIODeadline> = []
    private var awaitingPong = false
    private let resetBudget: Int
    private let resetWindow: TimeAmount

    /// - Parameters:
    ///   - assumedStreams: streams assumed before the server's SETTINGS arrive.
    ///   - resetBudget: our resets (RST_STREAM) per `resetWindow` after which the connection
    ///     takes no new streams, so a server that limits resets never sees us exceed it.
    init(assumedStreams: Int, resetBudget: Int, resetWindow: TimeAmount = .seconds(30)) {
        self.maxStreams = assumedStreams
        self.resetBudget = resetBudget
        self.resetWindow = resetWindow
    }

    var canTakeStream: Bool { self.state == .ready && self.activeStreams < self.maxStreams }
    /// Streams it could take now.
    var room: Int { self.canTakeStream ? self.maxStreams - self.activeStreams : 0 }
    var isConnecting: Bool { self.state == .connecting }

    /// The server's SETTINGS.
    mutating func settingsReceived(maxConcurrentStreams: Int?) -> Action {
        if let maxConcurrentStreams { self.maxStreams = max(0, maxConcurrentStreams) }
        guard self.state == .connecting else { return self.state == .ready ? .offerRoom : .none }
        self.state = .ready
        return .startPingsAndOfferRoom
    }

    /// GOAWAY: running streams up to `lastStreamID` finish; nothing new starts here.
    mutating func goAwayReceived(lastStreamID: Int) -> Action {
        self.lastProcessedStreamID = min(self.lastProcessedStreamID ?? lastStreamID, lastStreamID)
        guard self.state == .ready || self.state == .connecting else { return .none }
        self.state = .retiring
        return self.activeStreams == 0 ? .close(reason: "GOAWAY") : .none
    }

    /// The connection's stream ids run out (a client has 2^30 of them): it takes no new stream
    /// and closes once its streams have ended; the pool opens another.
    mutating func streamIDsExhausted() -> Action {
        guard self.state == .ready else { return .none }
        self.state = .retiring
        return self.activeStreams == 0 ? .close(reason: "stream ids used up") : .none
    }

    /// A stream was given to this connection.
    mutating func streamOpened() {
        self.activeStreams += 1
    }

    /// A stream ended. `resetByUs`: we cancelled it while the server was serving it (an
    /// RST_STREAM that counts against the budget). An error answer the server gave before its
    /// head, or a refusal, is the server's doing and does not count.
    mutating func streamEnded(resetByUs: Bool, now: NIODeadline) -> Action {
        self.activeStreams -= 1
        if resetByUs {
            self.resets.append(now)
            while let first = self.resets.first, now - first > self.resetWindow { self.resets.removeFirst() }
            if self.resets.count >= self.resetBudget, self.state == .ready {
                self.state = .retiring
            }
        }
        switch self.state {
        case .retiring where self.activeStreams == 0: return .close(reason: "retired")
        case .ready: return .offerRoom
        default: return .none
        }
    }

    /// The PING timer fired.
    mutating func pingTimerFired() -> Action {
        guard self.state == .ready || self.state == .retiring else { return .none }
        if self.awaitingPong { return .close(reason: "no answer to a PING") }
        guard self.activeStreams > 0 else { return .reschedulePing }
        self.awaitingPong = true
        return .sendPingAndReschedule
    }

    mutating func pongReceived() {
        self.awaitingPong = false
    }

    /// The connection failed or closed. Returns whether it was still connecting.
    mutating func closed() -> Bool? {
        guard self.state != .closed else { return nil }
        let wasConnecting = self.state == .connecting
        self.state = .closed
        return wasConnecting
    }
}
