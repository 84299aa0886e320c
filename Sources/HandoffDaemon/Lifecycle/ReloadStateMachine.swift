/// A zero-downtime reload of one process — a daemon, or a `--workers` supervisor — as a pure
/// state machine (the executable performs the actions).
///
/// On a reload request this process starts a successor (the current binary and configuration
/// on disk) that shares its listening socket. Only when the successor reports that it accepts
/// does this process hand over: it stops accepting, leaves queued handoffs to the successor and
/// drains its streams. If the successor fails (bad configuration, crash, no report in time),
/// this process keeps serving as before. There is never a moment in which nobody accepts.
public struct ReloadStateMachine: Sendable {
    /// What the owner does next.
    public enum Action: Equatable, Sendable {
        /// Tell the service manager `RELOADING=1` and start a successor on the shared socket.
        case startSuccessor
        /// A reload is already under way; this request is ignored (and logged).
        case ignoreReloadInProgress
        /// This process is stopping; a reload request is ignored (and logged).
        case ignoreStopping
        /// The successor accepts: tell the service manager `MAINPID=` + `READY=1`, then stop
        /// accepting (leaving the backlog to the successor) and drain.
        case handOver(successor: Int32)
        /// The reload failed: keep serving, tell the service manager `READY=1` with the reason.
        case keepServing(reason: String)
        /// Stop as asked; a successor that has not taken over yet is stopped too.
        case stop(successorToStop: Int32?)
        /// Nothing to do.
        case none
    }

    private enum State: Equatable {
        case serving
        case startingSuccessor
        case waitingForSuccessor(Int32)
        case handedOver
        case stopping
    }

    private var state = State.serving

    public init() {}

    /// Whether this process has handed over to a successor.
    public var hasHandedOver: Bool { self.state == .handedOver }

    /// SIGHUP (or `systemctl reload`).
    public mutating func reloadRequested() -> Action {
        switch self.state {
        case .serving:
            self.state = .startingSuccessor
            return .startSuccessor
        case .startingSuccessor, .waitingForSuccessor:
            return .ignoreReloadInProgress
        case .handedOver, .stopping:
            return .ignoreStopping
        }
    }

    /// The successor process exists; its report is awaited.
    public mutating func successorStarted(pid: Int32) -> Action {
        guard self.state == .startingSuccessor else { return .stop(successorToStop: pid) }
        self.state = .waitingForSuccessor(pid)
        return .none
    }

    /// The successor reported that it accepts handoffs.
    public mutating func successorReady() -> Action {
        guard case .waitingForSuccessor(let pid) = self.state else { return .none }
        self.state = .handedOver
        return .handOver(successor: pid)
    }

    /// The successor could not be started, exited, or did not report in time.
    public mutating func successorFailed(reason: String) -> Action {
        switch self.state {
        case .startingSuccessor, .waitingForSuccessor:
            self.state = .serving
            return .keepServing(reason: reason)
        case .serving, .handedOver, .stopping:
            return .none
        }
    }

    /// SIGTERM/SIGINT (or the drain after a hand-over, which needs no action here).
    public mutating func stopRequested() -> Action {
        let previous = self.state
        switch previous {
        case .handedOver, .stopping:
            return .none
        case .waitingForSuccessor(let pid):
            self.state = .stopping
            return .stop(successorToStop: pid)
        case .serving, .startingSuccessor:
            self.state = .stopping
            return .stop(successorToStop: nil)
        }
    }
}
