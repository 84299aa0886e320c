import Atomics

/// Counts what limits how many handoffs the daemon may take: streams (against
/// `max-connections`) and client descriptors (against the open-file limit).
///
/// Shared by the acceptor thread and every event loop, hence atomics.
final class StreamCapacity: Sendable {
    /// Most concurrent streams.
    let maximumStreams: Int
    /// Most client descriptors the process may hold so that passed descriptors are never
    /// dropped by the kernel for lack of a free slot.
    let maximumClientDescriptors: Int

    private let streams = ManagedAtomic<Int>(0)
    private let clientDescriptors = ManagedAtomic<Int>(0)

    init(maximumStreams: Int, maximumClientDescriptors: Int) {
        self.maximumStreams = maximumStreams
        self.maximumClientDescriptors = maximumClientDescriptors
    }

    /// Streams running now.
    var activeStreams: Int { self.streams.load(ordering: .relaxed) }

    /// Client descriptors held now (streams plus connections being answered).
    var heldClientDescriptors: Int { self.clientDescriptors.load(ordering: .relaxed) }

    /// Takes a stream slot; `false` when the daemon is at `max-connections`.
    func admitStream() -> Bool {
        let now = self.streams.wrappingIncrementThenLoad(ordering: .relaxed)
        if now <= self.maximumStreams { return true }
        self.streams.wrappingDecrement(ordering: .relaxed)
        return false
    }

    /// Gives a stream slot back.
    func releaseStream() {
        self.streams.wrappingDecrement(ordering: .relaxed)
    }

    /// Whether `additional` more client descriptors fit.
    func hasRoomForClientDescriptors(_ additional: Int) -> Bool {
        self.heldClientDescriptors + additional <= self.maximumClientDescriptors
    }

    /// A client descriptor now belongs to the daemon.
    func clientDescriptorTaken() {
        self.clientDescriptors.wrappingIncrement(ordering: .relaxed)
    }

    /// A client descriptor was closed.
    func clientDescriptorClosed() {
        self.clientDescriptors.wrappingDecrement(ordering: .relaxed)
    }
}
