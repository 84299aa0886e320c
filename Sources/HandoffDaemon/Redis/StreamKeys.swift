import HandoffRedis

/// The Redis names of one recorded stream, all hash-tagged with the stream id so a Redis
/// Cluster keeps them on one node.
///
///     <prefix>{<stream_id>}:events   a Redis Stream: entry 0-N holds event N's SSE bytes
///     <prefix>{<stream_id>}:meta     the claim (SET NX): who started it, when
///     <prefix>{<stream_id>}:notify   pub/sub wake-up after new entries
struct StreamKeys: Sendable, Equatable {
    let events: String
    let meta: String
    let notify: String

    init(prefix: String, streamID: String) {
        let base = "\(prefix){\(streamID)}:"
        self.events = base + "events"
        self.meta = base + "meta"
        self.notify = base + "notify"
    }

    /// Entries per read of the events.
    static let readBatch = 256

    /// `XRANGE`: the next ``readBatch`` recorded events after event `id` (entry `0-id`).
    func readEvents(after id: Int64) -> RESPCommand {
        RESPCommand("XRANGE", [.string(self.events), .string("(0-\(id)"), "+", "COUNT", .string(String(Self.readBatch))])
    }
}
