import NIOCore

/// A type that reacts to its own scheduled callback on its event loop.
protocol LoopTimerTarget: AnyObject {
    func loopTimerFired()
}

/// Schedules a callback to a loop-bound object without a closure allocation or a Sendable
/// conformance on the object: `scheduleCallback` instead of `scheduleTask`.
struct LoopTimer<Target: LoopTimerTarget>: NIOScheduledCallbackHandler, Sendable {
    private let target: NIOLoopBound<Target>

    /// Schedules `target.loopTimerFired()` after `delay` on `eventLoop`.
    static func schedule(_ target: Target, on eventLoop: any EventLoop, in delay: TimeAmount) -> NIOScheduledCallback? {
        try? eventLoop.scheduleCallback(in: delay, handler: LoopTimer(target: NIOLoopBound(target, eventLoop: eventLoop)))
    }

    func handleScheduledCallback(eventLoop: some EventLoop) {
        self.target.value.loopTimerFired()
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
