/// Write progress on a client connection, as a stream sees it: a pure state machine.
///
/// The stream looks at its connection after every write and every writability event, and
/// feeds in how many bytes wait for the kernel and how many the kernel has taken in all. While
/// bytes wait, a write-progress timer runs and every step forward moves its deadline; when nothing
/// waits any more — however that came about, a writability event or a later write that pushed
/// everything out — the timer stops and a paused source resumes. A client that takes nothing
/// for the whole timeout is cut; one that reads slowly but steadily is not.
struct WriteProgress: Equatable {
    /// What the stream does next.
    enum Action: Equatable {
        case none
        /// Arm (or re-arm) the write-progress timer.
        case armTimer
        /// Nothing waits any more: stop the timer, resume the source (or finish a final write).
        case drained
    }

    private var waiting = false
    private var sentAtLastLook = 0

    /// Whether bytes waited at the last look (the timer should be running).
    var isWaiting: Bool { self.waiting }

    /// Feeds the connection's state: bytes waiting for the kernel, and bytes it took so far.
    mutating func observe(pendingBytes: Int, sentBytes: Int) -> Action {
        defer { self.sentAtLastLook = sentBytes }
        if pendingBytes == 0 {
            guard self.waiting else { return .none }
            self.waiting = false
            return .drained
        }
        if !self.waiting {
            self.waiting = true
            return .armTimer
        }
        return sentBytes > self.sentAtLastLook ? .armTimer : .none
    }
}
