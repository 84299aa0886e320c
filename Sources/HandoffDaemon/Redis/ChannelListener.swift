import NIOCore

/// Something on one event loop that listens to a Redis pub/sub channel through
/// ``RedisServices/listen(_:_:loop:)``: a channel stream, or a follower waiting for new events.
protocol ChannelListener: AnyObject {
    /// The subscription is confirmed (again after a Redis reconnect): messages published from
    /// now on arrive. Anything published before may have been missed.
    func channelSubscribed()
    /// A message published to the channel (shared by the loop's listeners).
    func channelMessage(_ message: ChannelMessage)
}
