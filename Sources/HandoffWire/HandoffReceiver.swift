import CHandoffShim

#if canImport(Glibc)
import Glibc
#endif

/// One handoff record as it came off the wire, before validation.
///
/// Every descriptor the kernel passed is already owned by ``descriptors``, so whatever the
/// caller decides, each of them is closed or handed on exactly once.
public struct ReceivedHandoff {
    /// The record's payload bytes, as sent (at most the receiver's maximum).
    public var payload: [UInt8]
    /// Every descriptor from every `SCM_RIGHTS` control message, in order.
    public var descriptors: [OwnedDescriptor]
    /// `MSG_TRUNC`: the record was larger than the maximum payload.
    public var payloadTruncated: Bool
    /// `MSG_CTRUNC`: control data was cut, so the kernel dropped descriptors.
    public var controlTruncated: Bool
    /// Control messages that were not `SCM_RIGHTS`.
    public var otherControlMessages: Int

    public init(
        payload: [UInt8],
        descriptors: [OwnedDescriptor],
        payloadTruncated: Bool = false,
        controlTruncated: Bool = false,
        otherControlMessages: Int = 0
    ) {
        self.payload = payload
        self.descriptors = descriptors
        self.payloadTruncated = payloadTruncated
        self.controlTruncated = controlTruncated
        self.otherControlMessages = otherControlMessages
    }
}

/// Receives handoff records from accepted SEQPACKET connections with one reusable buffer.
///
/// `recvmsg` runs with `MSG_CMSG_CLOEXEC`, so passed descriptors never leak into children.
/// Not `Sendable`: one per acceptor thread.
public final class HandoffReceiver {
    /// What one receive attempt produced.
    public enum Outcome {
        /// Nothing has arrived yet.
        case wouldBlock
        /// The peer closed without sending a record.
        case endOfStream
        /// A record arrived.
        case record(ReceivedHandoff)
    }

    /// The largest payload accepted, in bytes; larger records are flagged truncated.
    public let maximumPayloadBytes: Int
    /// Descriptor slots in the control buffer; more than this sets `controlTruncated`.
    public static let descriptorSlots = 8

    private let payloadBuffer: UnsafeMutableRawBufferPointer
    private let controlBuffer: UnsafeMutableRawBufferPointer
    private var collected: [CInt]

    public init(maximumPayloadBytes: Int) {
        precondition(maximumPayloadBytes > 0)
        self.maximumPayloadBytes = maximumPayloadBytes
        self.payloadBuffer = .allocate(byteCount: maximumPayloadBytes, alignment: 16)
        let controlBytes = handoff_cmsg_space_for_fds(Self.descriptorSlots)
        self.controlBuffer = .allocate(byteCount: controlBytes, alignment: MemoryLayout<Int>.alignment)
        self.collected = Array(repeating: -1, count: Self.descriptorSlots * 2)
    }

    deinit {
        self.payloadBuffer.deallocate()
        self.controlBuffer.deallocate()
    }

    /// Receives one record from `connection` (non-blocking).
    ///
    /// An end of stream is believed only on a second look. Linux checks a `SOCK_SEQPACKET`
    /// socket's queue, lets go of it, then checks whether the peer has shut down: a sender that
    /// sends and closes at once (the original module) can land its record between the two, and
    /// the read reports the end with the record queued. Once the end shows, anything sent
    /// before it is in the queue, so the second look is definitive.
    public func receive(from connection: CInt) throws -> Outcome {
        let first = try self.receiveOnce(from: connection)
        guard case .endOfStream = first else { return first }
        return try self.receiveOnce(from: connection)
    }

    private func receiveOnce(from connection: CInt) throws -> Outcome {
        var vector = iovec(iov_base: self.payloadBuffer.baseAddress, iov_len: self.payloadBuffer.count)
        return try withUnsafeMutablePointer(to: &vector) { vectorPointer in
            var message = msghdr()
            message.msg_iov = vectorPointer
            message.msg_iovlen = 1
            message.msg_control = self.controlBuffer.baseAddress
            message.msg_controllen = self.controlBuffer.count
            guard let count = try Syscall.recvmsg(connection, &message, flags: handoff_MSG_CMSG_CLOEXEC) else {
                return .wouldBlock
            }
            // Take ownership of every descriptor before looking at anything else.
            var others = 0
            let found = self.collected.withUnsafeMutableBufferPointer { out in
                handoff_msg_collect_fds(&message, out.baseAddress, out.count, &others)
            }
            let owned = (0..<min(found, self.collected.count)).map { OwnedDescriptor(taking: self.collected[$0]) }
            let flags = message.msg_flags
            if count == 0 && owned.isEmpty && others == 0 && flags & handoff_MSG_CTRUNC == 0 {
                return .endOfStream
            }
            let kept = min(count, self.payloadBuffer.count)
            return .record(
                ReceivedHandoff(
                    payload: Array(UnsafeRawBufferPointer(rebasing: self.payloadBuffer[0..<kept])),
                    descriptors: owned,
                    payloadTruncated: flags & handoff_MSG_TRUNC != 0,
                    controlTruncated: flags & handoff_MSG_CTRUNC != 0,
                    otherControlMessages: others
                )
            )
        }
    }
}
