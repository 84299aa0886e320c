import CHandoffShim

/// The acknowledged handoff (DESIGN.md §3), an opt-in extension of the wire protocol.
///
/// A sender that wants to know whether the daemon took the client binds its end of the
/// SEQPACKET connection to an abstract address that starts with ``marker`` before connecting.
/// The daemon sees that address in `accept4(2)`; old daemons never look at it, and old senders
/// never bind, so each half keeps working with the other's old version.
///
/// After receiving the record, a daemon that was asked answers on the same connection with one
/// byte: ``acknowledged`` when it owns the client descriptor and will answer it (a stream, or an
/// HTTP error it writes itself), ``refused`` when the record was unusable and nothing will be
/// written. It sends ``acknowledged`` *before* writing anything; if that send fails (the sender
/// shut the connection down because it gave up waiting), the daemon closes its copy of the
/// client without writing a byte. The kernel makes this race-free: the byte is either queued
/// before the sender's `shutdown(2)` (and the sender's last look finds it) or the send fails
/// with `EPIPE`.
public enum HandoffAck {
    /// The abstract-name prefix (after the leading NUL) that asks for an acknowledgement. One
    /// definition, in the C shim, which binds and recognises it.
    public static let marker: String = HANDOFF_ACK_MARKER
    /// "I own the client and will answer it" (ASCII ACK).
    public static let acknowledged: UInt8 = 0x06
    /// "The record was unusable; I closed the client without writing" (ASCII NAK).
    public static let refused: UInt8 = 0x15

    /// What the daemon does for a record whose sender asked for an acknowledgement.
    public enum Reply: Equatable, Sendable {
        /// Send ``acknowledged``; serve the client only if that send succeeded.
        case acknowledgeThenServe
        /// Send ``refused``; the client is already closed.
        case refuse
        /// The sender did not ask: serve as the original protocol does.
        case none
    }

    /// The daemon's reply for a record, from whether its sender asked and what inspection made of it.
    public static func reply(wantsAck: Bool, disposition: HandoffDisposition) -> Reply {
        guard wantsAck else { return .none }
        switch disposition {
        case .accepted, .answer: return .acknowledgeThenServe
        case .dropped: return .refuse
        }
    }

    /// Sends the one-byte answer `byte` on the handoff connection; whether it went out (it
    /// does not once the sender stopped waiting and shut down).
    public static func send(_ byte: UInt8, on connection: OwnedDescriptor) -> Bool {
        ((try? withUnsafeBytes(of: byte) { try Syscall.send(connection.rawValue, $0) }) ?? nil) == 1
    }
}

/// The sender's side of an acknowledged handoff after its record went out: a pure state machine.
///
/// The owner waits for the socket to become readable until its deadline and feeds in what it
/// saw; it performs the returned action. The Apache module implements the same table in C.
public struct HandoffAckExchange: Sendable {
    /// How the exchange ended.
    public enum Outcome: Equatable, Sendable {
        /// The daemon acknowledged: it owns the client now.
        case committed
        /// The daemon read the record and closed without a byte: an original daemon that does
        /// not know the extension took the client, as in the original protocol.
        case committedToLegacyDaemon
        /// The daemon refused the record; the sender must answer the client (an internal error).
        case refusedByDaemon
        /// The daemon never took the client (it died, hung or was too slow); the sender must
        /// answer it (`503`).
        case notHandedOff
    }

    /// What the sender observed.
    public enum Event: Equatable, Sendable {
        /// One byte arrived.
        case received(UInt8)
        /// The daemon closed the connection cleanly (`recv` returned 0).
        case endOfStream
        /// The connection failed (`ECONNRESET`: the daemon died with the record unread).
        case failed
        /// Nothing arrived before the deadline (or, on the last look, nothing was there).
        case nothingYet
    }

    /// What the owner does next.
    public enum Action: Equatable, Sendable {
        /// Shut the connection down both ways, then look once more without waiting.
        case shutDownAndLookOnceMore
        /// The exchange is over.
        case finish(Outcome)
    }

    private enum State { case waiting, lastLook, done }
    private var state = State.waiting

    public init() {}

    /// Feeds one observation; returns what to do.
    public mutating func observe(_ event: Event) -> Action {
        switch (self.state, event) {
        case (.done, _):
            preconditionFailure("HandoffAckExchange observed \(event) after it finished")
        case (_, .received(HandoffAck.acknowledged)):
            self.state = .done
            return .finish(.committed)
        case (.waiting, .received(HandoffAck.refused)):
            self.state = .done
            return .finish(.refusedByDaemon)
        case (.waiting, .endOfStream):
            self.state = .done
            return .finish(.committedToLegacyDaemon)
        case (.waiting, .nothingYet):
            self.state = .lastLook
            return .shutDownAndLookOnceMore
        case (.waiting, .received), (.waiting, .failed), (.lastLook, _):
            // An unknown byte means a daemon we do not understand: treat it as not taken.
            // On the last look anything but the ack means the daemon will not write.
            self.state = .done
            return .finish(.notHandedOff)
        }
    }
}
