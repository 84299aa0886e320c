/// The children `handoff-exec` runs, with their deadlines. Pure: the server performs what it
/// says (spawn, signal, reap).
struct ChildTable {
    struct Child: Equatable {
        var pid: Int32
        var started: ContinuousClock.Instant
        /// When to send SIGTERM, then SIGKILL.
        var terminateAt: ContinuousClock.Instant
        var killAt: ContinuousClock.Instant?
        /// The payload file to delete when it exits, if any.
        var payloadFile: String?
    }

    /// What to do to a child now.
    enum Signal: Equatable {
        case terminate(Int32)
        case kill(Int32)
    }

    let limit: Int
    let timeout: Duration
    let killGrace: Duration
    private(set) var children: [Int32: Child] = [:]

    init(limit: Int, timeout: Duration, killGrace: Duration) {
        self.limit = limit
        self.timeout = timeout
        self.killGrace = killGrace
    }

    var count: Int { self.children.count }
    var hasRoom: Bool { self.children.count < self.limit }

    mutating func started(pid: Int32, at now: ContinuousClock.Instant, payloadFile: String?) {
        self.children[pid] = Child(pid: pid, started: now, terminateAt: now + self.timeout, payloadFile: payloadFile)
    }

    /// A child exited: the record of it, if it was ours.
    mutating func exited(pid: Int32) -> Child? {
        self.children.removeValue(forKey: pid)
    }

    /// Signals due at `now`: SIGTERM at the timeout, SIGKILL `killGrace` later.
    mutating func due(at now: ContinuousClock.Instant) -> [Signal] {
        var signals: [Signal] = []
        for (pid, child) in self.children {
            if let killAt = child.killAt {
                if now >= killAt {
                    signals.append(.kill(pid))
                    self.children[pid]?.killAt = now + self.killGrace  // again if it still lives
                }
            } else if now >= child.terminateAt {
                signals.append(.terminate(pid))
                self.children[pid]?.killAt = now + self.killGrace
            }
        }
        return signals.sorted { $0.pid < $1.pid }
    }

    /// Ends every child from now (shutdown after the drain): SIGTERM now, SIGKILL after the grace.
    mutating func endAll(at now: ContinuousClock.Instant) -> [Signal] {
        for pid in self.children.keys where self.children[pid]?.killAt == nil {
            self.children[pid]?.terminateAt = now
        }
        return self.due(at: now)
    }

    /// The earliest deadline, for the wait.
    var nextDeadline: ContinuousClock.Instant? {
        self.children.values.map { $0.killAt ?? $0.terminateAt }.min()
    }
}

extension ChildTable.Signal {
    var pid: Int32 {
        switch self {
        case .terminate(let pid), .kill(let pid): pid
        }
    }
}
