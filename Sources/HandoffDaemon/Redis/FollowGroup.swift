import HandoffRedis
import NIOCore

/// The followers of one recorded stream on one event loop: one subscription to its wake-ups
/// and one `XRANGE` per wake-up for all of them, however many there are.
///
/// The group reads what comes after ``tail`` (the furthest any member is known to have
/// caught up to) and offers it to every member; a member that is behind (paused, or still
/// replaying) reads on its own until it has caught up, and then says so. Members keep their
/// own position, so what a member sends is exactly once and in order whichever way it came.
// @unchecked Sendable: used only on its loop.
final class FollowGroup: ChannelListener, @unchecked Sendable {
    private let services: RedisServices
    private let loop: EventLoopState
    let keys: StreamKeys
    private var members: [ObjectIdentifier: FollowSource] = [:]
    /// The last event id the group has read (or a member has caught up to).
    private var tail: Int64 = 0
    private var fetching = false
    private var fetchAgain = false

    init(services: RedisServices, loop: EventLoopState, keys: StreamKeys) {
        self.services = services
        self.loop = loop
        self.keys = keys
    }

    /// Adds `member`, which reads its replay by itself right after.
    func add(_ member: FollowSource) {
        self.members[ObjectIdentifier(member)] = member
        if self.members.count == 1 { self.services.listen(self.keys.notify, self, loop: self.loop) }
    }

    func remove(_ member: FollowSource) {
        guard self.members.removeValue(forKey: ObjectIdentifier(member)) != nil, self.members.isEmpty else { return }
        self.services.unlisten(self.keys.notify, self, loop: self.loop)
        self.services.followGroupEmptied(self, loop: self.loop)
    }

    /// A member read up to `position` with nothing more to read: the group can start there.
    func caughtUp(to position: Int64) {
        self.tail = max(self.tail, position)
    }

    // MARK: ChannelListener

    func channelSubscribed() {
        for member in self.members.values { member.catchUp() }
        // A stream nobody followed publishes its wake-ups at most once per
        // `StreamRecorder.unfollowedPublishInterval`: until one surely reached this
        // subscription, look for new events anyway.
        let interval = StreamRecorder.unfollowedPublishInterval
        for delay in [TimeAmount.milliseconds(100), .milliseconds(400), interval + .milliseconds(300)] {
            self.loop.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: delay) { [weak self] in self?.fetch() }
        }
    }

    func channelMessage(_ message: ChannelMessage) {
        self.fetch()
    }

    // MARK: Reading

    private func fetch() {
        guard !self.members.isEmpty else { return }
        if self.fetching {
            self.fetchAgain = true
            return
        }
        self.fetching = true
        self.fetchAgain = false
        self.services.send(self.keys.readEvents(after: self.tail), loop: self.loop, timed: false).assumeIsolated().whenComplete { result in
            self.fetching = false
            guard case .success(let reply) = result, let entries = reply.array else {
                // Members see the same trouble on their own reads, and end their streams.
                for member in self.members.values { member.catchUp() }
                return
            }
            let events = entries.compactMap(RecordedEvent.init)
            if let last = events.last { self.tail = max(self.tail, last.id) }
            if !events.isEmpty {
                for member in Array(self.members.values) { member.offer(events[...]) }
            }
            if entries.count == StreamKeys.readBatch || self.fetchAgain { self.fetch() }
        }
    }
}

/// The follow groups of one loop, by stream.
// @unchecked Sendable: used only on its loop.
final class FollowGroupTable: @unchecked Sendable {
    private var groups: [String: FollowGroup] = [:]

    func group(for keys: StreamKeys, make: () -> FollowGroup) -> FollowGroup {
        if let group = self.groups[keys.events] { return group }
        let group = make()
        self.groups[keys.events] = group
        return group
    }

    func remove(_ group: FollowGroup) {
        if self.groups[group.keys.events] === group { self.groups[group.keys.events] = nil }
    }
}
