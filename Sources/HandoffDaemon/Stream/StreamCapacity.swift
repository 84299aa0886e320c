import Atomics

/// Counts what limits how many handoffs the daemon may take: streams (against
/// `max-connections`) and descriptors (against the open-file limit).
///
/// Every descriptor a stream costs counts: its client, and the upstream connection when the
/// backend opens one per stream (HTTP/1.1); pooled HTTP/2 connections count too. The acceptor
/// stops taking connections, and new streams are answered `503`, before the process could run
/// out — so the kernel never drops a passed descriptor (`MSG_CTRUNC`) and `accept4` never
/// fails for want of one in normal operation.
///
/// Shared by the acceptor thread and every event loop, hence atomics.
final class StreamCapacity: Sendable {
    /// Most concurrent streams.
    let maximumStreams: Int
    /// Most descriptors the streams may hold together (clients and upstream connections).
    let maximumDescriptors: Int

    private let streams = ManagedAtomic<Int>(0)
    private let clientDescriptors = ManagedAtomic<Int>(0)
    private let upstreamDescriptors: @Sendable () -> Int

    /// - Parameter upstreamDescriptors: upstream connections open now (or being opened).
    init(maximumStreams: Int, maximumDescriptors: Int, upstreamDescriptors: @escaping @Sendable () -> Int = { 0 }) {
        self.maximumStreams = maximumStreams
        self.maximumDescriptors = maximumDescriptors
        self.upstreamDescriptors = upstreamDescriptors
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

    /// Whether `additional` more descriptors fit beside the clients and upstream connections
    /// held now.
    func hasRoomForDescriptors(_ additional: Int) -> Bool {
        self.heldClientDescriptors + self.upstreamDescriptors() + additional <= self.maximumDescriptors
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
