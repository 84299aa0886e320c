/// The ending of one upstream call, shared by the HTTP/2 and HTTP/1.1 transports: report the
/// outcome to the delegate exactly once, and never after the owner cancelled.
struct UpstreamCallState {
    private(set) var delegate: (any UpstreamResponseDelegate)?
    private(set) var ended = false
    private(set) var cancelled = false

    init(delegate: any UpstreamResponseDelegate) {
        self.delegate = delegate
    }

    /// Marks the call cancelled; returns `false` if it had already ended or been cancelled.
    mutating func cancel() -> Bool {
        guard !self.cancelled, !self.ended else { return false }
        self.cancelled = true
        self.delegate = nil
        return true
    }

    /// Ends the call, returning the delegate to tell (none if cancelled or already ended).
    mutating func end() -> (any UpstreamResponseDelegate)? {
        guard !self.ended else { return nil }
        self.ended = true
        defer { self.delegate = nil }
        return self.cancelled ? nil : self.delegate
    }

    /// Reports `result` to the delegate once.
    mutating func finish(_ result: Result<Void, UpstreamError>) {
        guard let delegate = self.end() else { return }
        switch result {
        case .success: delegate.upstreamFinished()
        case .failure(let error): delegate.upstreamFailed(error)
        }
    }
}
