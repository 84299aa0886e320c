import CHandoffShim

#if canImport(Glibc)
import Glibc
#endif

/// The sending side of the protocol, exactly as the Apache module speaks it: one SEQPACKET
/// connection per handoff, one `sendmsg` with the payload and one descriptor, then close.
/// Used by the load generator, the conformance runner and the tests.
public enum HandoffSender {
    /// Connects a non-blocking SEQPACKET socket to `path`; `nil` when the listener's backlog is
    /// full (`EAGAIN`), which callers treat as transient.
    ///
    /// With `requestingAck`, the socket first binds the ``HandoffAck/marker`` address: the
    /// daemon will answer the record with one byte (see ``awaitAck(on:timeoutMilliseconds:)``).
    public static func connect(to path: String, requestingAck: Bool = false) throws -> OwnedDescriptor? {
        let address = try UnixSocketAddress(path: path)
        let socket = OwnedDescriptor(taking: try Syscall.socket(domain: AF_UNIX, type: handoff_SOCK_SEQPACKET))
        do {
            if requestingAck { try Syscall.bindAckMarker(socket.rawValue) }
            switch try Syscall.connect(socket.rawValue, to: address) {
            case .connected, .inProgress:
                return socket
            case .wouldBlock:
                socket.closeIfOpen()
                return nil
            }
        } catch {
            socket.closeIfOpen()
            throw error
        }
    }

    /// Sends one handoff record on `connection`: `payload` (a single NUL when empty, as the
    /// module does without `X-Handoff-Data`) and, when given, `descriptors` as `SCM_RIGHTS`.
    /// Returns `false` if the socket would block.
    ///
    /// - Parameters:
    ///   - payload: the `X-Handoff-Data` bytes.
    ///   - descriptors: normally exactly one, the client socket; tests pass zero or several.
    ///   - nulForEmpty: send one `0x00` byte when `payload` is empty (the protocol's rule).
    @discardableResult
    public static func send(on connection: CInt, payload: [UInt8], descriptors: [CInt], nulForEmpty: Bool = true) throws -> Bool {
        let bytes = payload.isEmpty && nulForEmpty ? [0] : payload
        let controlBytes = descriptors.isEmpty ? 0 : handoff_cmsg_space_for_fds(descriptors.count)
        let control = UnsafeMutableRawBufferPointer.allocate(byteCount: max(controlBytes, 1), alignment: MemoryLayout<Int>.alignment)
        defer { control.deallocate() }
        return try bytes.withUnsafeBytes { raw in
            var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress), iov_len: raw.count)
            return try withUnsafeMutablePointer(to: &vector) { vectorPointer in
                var message = msghdr()
                message.msg_iov = vectorPointer
                message.msg_iovlen = 1
                if !descriptors.isEmpty {
                    descriptors.withUnsafeBufferPointer {
                        handoff_msg_set_fds(&message, control.baseAddress, control.count, $0.baseAddress, $0.count)
                    }
                }
                return try Syscall.sendmsg(connection, &message, flags: handoff_MSG_NOSIGNAL) != nil
            }
        }
    }

    /// Waits up to `timeoutMilliseconds` for the daemon's acknowledgement on `connection` (whose
    /// record has been sent), exactly as the Apache module does: on no answer it shuts the
    /// connection down and looks once more.
    public static func awaitAck(on connection: CInt, timeoutMilliseconds: Int) -> HandoffAckExchange.Outcome {
        var exchange = HandoffAckExchange()
        var action = exchange.observe(Self.look(connection, timeoutMilliseconds: timeoutMilliseconds))
        if action == .shutDownAndLookOnceMore {
            try? Syscall.shutdown(connection, how: CInt(SHUT_RDWR))
            action = exchange.observe(Self.look(connection, timeoutMilliseconds: 0))
        }
        guard case .finish(let outcome) = action else { preconditionFailure("the ack exchange ends after its last look") }
        return outcome
    }

    private static func look(_ connection: CInt, timeoutMilliseconds: Int) -> HandoffAckExchange.Event {
        guard (try? Syscall.waitReadable(connection, timeoutMilliseconds: timeoutMilliseconds)) == true else { return .nothingYet }
        var byte: UInt8 = 0
        do {
            guard let count = try withUnsafeMutableBytes(of: &byte, { try Syscall.read(connection, into: $0) }) else { return .nothingYet }
            return count == 0 ? .endOfStream : .received(byte)
        } catch {
            return .failed
        }
    }
}
