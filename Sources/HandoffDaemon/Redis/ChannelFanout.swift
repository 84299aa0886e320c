import NIOCore

/// The listeners of each pub/sub channel on one event loop: the daemon holds one Redis
/// subscription per channel, and each loop fans a message out to its own listeners.
// @unchecked Sendable: used only on its loop (the services hop there before every call).
final class ChannelFanout: @unchecked Sendable {
    /// Counts messages handed to listeners (once per delivery, not per listener): channel, count.
    var delivered: (String, Int) -> Void = { _, _ in }

    private var listeners: [String: [ObjectIdentifier: any ChannelListener]] = [:]
    /// Channels whose subscription is confirmed, as last heard from the subscriber.
    private var confirmed: Set<String> = []

    /// Adds `listener`; true when it is the loop's first for `channel`.
    func add(_ channel: String, _ listener: any ChannelListener) -> (first: Bool, confirmed: Bool) {
        var entry = self.listeners[channel] ?? [:]
        let first = entry.isEmpty
        entry[ObjectIdentifier(listener)] = listener
        self.listeners[channel] = entry
        return (first, self.confirmed.contains(channel))
    }

    /// Removes `listener`; true when the loop has none left for `channel`.
    func remove(_ channel: String, _ listener: any ChannelListener) -> Bool {
        guard var entry = self.listeners[channel], entry.removeValue(forKey: ObjectIdentifier(listener)) != nil else { return false }
        if entry.isEmpty {
            self.listeners[channel] = nil
            self.confirmed.remove(channel)
            return true
        }
        self.listeners[channel] = entry
        return false
    }

    func subscribed(_ channel: String) {
        guard let entry = self.listeners[channel] else { return }
        self.confirmed.insert(channel)
        for listener in entry.values { listener.channelSubscribed() }
    }

    func deliver(_ channel: String, _ message: ByteBuffer) {
        guard let entry = self.listeners[channel] else { return }
        let shared = ChannelMessage(payload: message)
        for listener in entry.values { listener.channelMessage(shared) }
        self.delivered(channel, entry.count)
    }

    /// The subscriber's connection dropped: nothing is confirmed until it resubscribes.
    func connectionLost() {
        self.confirmed.removeAll()
    }

    func isListening(_ channel: String, _ listener: any ChannelListener) -> Bool {
        self.listeners[channel]?[ObjectIdentifier(listener)] != nil
    }
}
