import CHandoffShim

/// A small level-triggered epoll instance for a dedicated thread (the handoff acceptor).
///
/// Not `Sendable`: owned and used by one thread.
public final class Epoll {
    /// Readiness bits, as `epoll_event.events`.
    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        public static let readable = Events(rawValue: handoff_EPOLLIN)
        public static let writable = Events(rawValue: handoff_EPOLLOUT)
        public static let error = Events(rawValue: handoff_EPOLLERR)
        public static let hangup = Events(rawValue: handoff_EPOLLHUP)
        public static let readHangup = Events(rawValue: handoff_EPOLLRDHUP)
        public static let edgeTriggered = Events(rawValue: handoff_EPOLLET)
    }

    private let descriptor: OwnedDescriptor
    private var readyEvents: [UInt32]
    private var readyData: [UInt64]

    /// Creates an epoll instance returning at most `capacity` events per wait (≤ 256).
    public init(capacity: Int = 256) throws {
        self.descriptor = OwnedDescriptor(taking: try Syscall.epollCreate())
        self.readyEvents = Array(repeating: 0, count: min(capacity, 256))
        self.readyData = Array(repeating: 0, count: min(capacity, 256))
    }

    /// Watches `fd` for `events`, tagging its readiness with `token`.
    public func add(_ fd: CInt, events: Events, token: UInt64) throws {
        try Syscall.epollControl(self.descriptor.rawValue, operation: handoff_EPOLL_CTL_ADD, fd: fd, events: events.rawValue, data: token)
    }

    /// Changes what `fd` is watched for.
    public func modify(_ fd: CInt, events: Events, token: UInt64) throws {
        try Syscall.epollControl(self.descriptor.rawValue, operation: handoff_EPOLL_CTL_MOD, fd: fd, events: events.rawValue, data: token)
    }

    /// Stops watching `fd`. Must be called before `fd` is closed or given away.
    public func remove(_ fd: CInt) throws {
        try Syscall.epollControl(self.descriptor.rawValue, operation: handoff_EPOLL_CTL_DEL, fd: fd, events: 0, data: 0)
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever) and calls `body` per ready descriptor.
    public func wait(timeoutMilliseconds: Int, _ body: (_ token: UInt64, _ events: Events) throws -> Void) throws {
        let capacity = CInt(self.readyEvents.count)
        let timeout = CInt(clamping: timeoutMilliseconds)
        let count = try self.readyEvents.withUnsafeMutableBufferPointer { events in
            try self.readyData.withUnsafeMutableBufferPointer { data in
                try Syscall.epollWait(
                    self.descriptor.rawValue,
                    events: events.baseAddress!,
                    data: data.baseAddress!,
                    maximum: capacity,
                    timeoutMilliseconds: timeout
                )
            }
        }
        for index in 0..<count {
            try body(self.readyData[index], Events(rawValue: self.readyEvents[index]))
        }
    }

    deinit {
        self.descriptor.closeIfOpen()
    }
}
