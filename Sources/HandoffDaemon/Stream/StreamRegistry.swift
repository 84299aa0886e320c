import NIOCore

/// The streams running on one event loop, so shutdown can reach each of them.
///
/// An intrusive list through ``StreamSession``'s links: registering allocates nothing.
// @unchecked Sendable: every member is touched only on `eventLoop`; methods assert it.
final class StreamRegistry: @unchecked Sendable {
    let eventLoop: any EventLoop
    private var head: StreamSession?
    private(set) var count = 0

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func insert(_ handler: StreamSession) {
        self.eventLoop.assertInEventLoop()
        handler.registryNext = self.head
        self.head?.registryPrevious = handler
        self.head = handler
        self.count += 1
    }

    func remove(_ handler: StreamSession) {
        self.eventLoop.assertInEventLoop()
        if let previous = handler.registryPrevious {
            previous.registryNext = handler.registryNext
        } else if self.head === handler {
            self.head = handler.registryNext
        } else {
            return
        }
        handler.registryNext?.registryPrevious = handler.registryPrevious
        handler.registryNext = nil
        handler.registryPrevious = nil
        self.count -= 1
    }

    /// Ends every stream on this loop with an error event (drain deadline or forced exit).
    func endAll() {
        self.eventLoop.assertInEventLoop()
        var handlers: [StreamSession] = []
        handlers.reserveCapacity(self.count)
        var cursor = self.head
        while let handler = cursor {
            handlers.append(handler)
            cursor = handler.registryNext
        }
        for handler in handlers { handler.shutdownDeadlinePassed() }
    }
}
