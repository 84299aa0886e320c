import CHandoffShim

#if canImport(Glibc)
import Glibc
#endif

/// Why a handoff record was not accepted as it stands.
public enum HandoffRejection: String, Sendable, Hashable, CaseIterable {
    /// The record carried no descriptor.
    case missingDescriptor = "missing_fd"
    /// The record carried more than one descriptor.
    case extraDescriptors = "extra_fds"
    /// The kernel cut the control data (`MSG_CTRUNC`), dropping descriptors.
    case controlTruncated = "control_truncated"
    /// The descriptor is not a connected `SOCK_STREAM` socket.
    case invalidDescriptor = "invalid_fd"
    /// The payload was larger than the configured maximum (`MSG_TRUNC`).
    case payloadTooLarge = "payload_too_large"
    /// The peer closed the connection without sending a record.
    case emptyConnection = "no_message"
    /// No record arrived within the handoff timeout.
    case timeout = "timeout"
    /// The peer's uid is not on the allow-list.
    case peerNotAllowed = "peer_not_allowed"
    /// Receiving failed with a socket error.
    case receiveFailed = "receive_failed"
    /// The sender asked for an acknowledgement but stopped waiting before it arrived; it
    /// answers the client itself, so the daemon closed its copy without writing.
    case abandonedBySender = "abandoned"
    /// `accept4` failed for want of descriptors; the connection waits in the backlog.
    case outOfDescriptors = "accept_emfile"
}

/// What to do with a received record.
public enum HandoffDisposition {
    /// A well-formed handoff: the client connection and its payload (trailing NULs trimmed).
    case accepted(client: OwnedDescriptor, payload: [UInt8])
    /// A malformed handoff whose client connection we still hold: answer it with an HTTP error.
    case answer(client: OwnedDescriptor, rejection: HandoffRejection)
    /// A malformed handoff with no client we could answer; everything has been closed.
    case dropped(HandoffRejection)

    /// Closes the client descriptor, if any, without writing to it.
    public func abandon() {
        switch self {
        case .accepted(let client, _), .answer(let client, _): client.closeIfOpen()
        case .dropped: return
        }
    }
}

/// Validates a ``ReceivedHandoff`` as DESIGN.md §3 says, closing every descriptor it does not
/// hand on.
public enum HandoffInspection {
    /// Decides the fate of `record`. Every descriptor in it ends up either in the result or closed.
    public static func inspect(_ record: consuming ReceivedHandoff) -> HandoffDisposition {
        var descriptors = record.descriptors
        guard !descriptors.isEmpty else {
            return .dropped(record.controlTruncated ? .controlTruncated : .missingDescriptor)
        }
        let first = descriptors.removeFirst()
        for extra in descriptors { extra.closeIfOpen() }

        guard Self.isConnectedStreamSocket(first.rawValue) else {
            first.closeIfOpen()
            return .dropped(.invalidDescriptor)
        }
        if record.controlTruncated { return .answer(client: first, rejection: .controlTruncated) }
        if !descriptors.isEmpty { return .answer(client: first, rejection: .extraDescriptors) }
        if record.payloadTruncated { return .answer(client: first, rejection: .payloadTooLarge) }
        return .accepted(client: first, payload: Self.trimmingNULs(record.payload))
    }

    /// Whether `fd` is a connected `SOCK_STREAM` socket. (A listening socket has no peer, so
    /// `getpeername` rules it out too.)
    public static func isConnectedStreamSocket(_ fd: CInt) -> Bool {
        guard let type = try? Syscall.socketOption(fd, level: SOL_SOCKET, name: SO_TYPE), type == handoff_SOCK_STREAM else {
            return false
        }
        return (try? Syscall.isConnected(fd)) == true
    }

    /// The payload without leading or trailing NUL bytes (the module sends one NUL for "no data").
    public static func trimmingNULs(_ payload: [UInt8]) -> [UInt8] {
        guard let start = payload.firstIndex(where: { $0 != 0 }) else { return [] }
        let end = payload.lastIndex(where: { $0 != 0 })!
        if start == 0 && end == payload.count - 1 { return payload }
        return Array(payload[start...end])
    }
}
