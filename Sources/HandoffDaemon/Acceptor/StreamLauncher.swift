import HandoffWire
import Logging
import NIOCore
import NIOPosix

/// Turns each accepted handoff into a NIO channel on one of the daemon's event loops.
///
/// Called on the acceptor thread. The client descriptor leaves the wire layer's ownership here
/// and becomes the channel's, which closes it; ``StreamHandler`` answers malformed handoffs
/// whose client we hold with a real HTTP error.
struct StreamLauncher: Sendable {
    let group: any EventLoopGroup
    let environment: StreamEnvironment

    /// Low and high water marks of a client channel's outbound buffer, in bytes: above the high
    /// mark the source pauses (backpressure reaches the upstream), below the low it resumes.
    static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 8 * 1024, high: 32 * 1024)

    func launch(_ disposition: HandoffDisposition) {
        switch disposition {
        case .accepted(let client, let payload):
            self.adopt(client, admission: .handoff(payload: payload))
        case .answer(let client, let rejection):
            let response = Self.response(for: rejection)
            self.adopt(client, admission: .refused(response, reason: rejection.rawValue))
        case .dropped:
            return
        }
    }

    private func adopt(_ client: OwnedDescriptor, admission: StreamHandler.Admission) {
        let environment = self.environment
        environment.capacity.clientDescriptorTaken()
        let fd = client.takeDescriptorOwnership()
        let future = ClientBootstrap(group: self.group.next())
            .channelOption(.allowRemoteHalfClosure, value: false)
            .channelOption(.writeBufferWaterMark, value: Self.writeBufferWaterMark)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 512))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(StreamHandler(environment: environment, admission: admission))
                }
            }
            .withConnectedSocket(fd)
        future.whenFailure { error in
            environment.logger.error("adopting a client connection failed", metadata: ["error": "\(error)", "fd": "\(fd)"])
            environment.metrics.handoffError("launch_failed")
        }
    }

    static func response(for rejection: HandoffRejection) -> ErrorResponse {
        switch rejection {
        case .payloadTooLarge:
            ErrorResponse(status: .payloadTooLarge, error: rejection.rawValue, message: "the handoff data is larger than this server accepts")
        default:
            ErrorResponse(status: .badRequest, error: rejection.rawValue, message: "the handoff was malformed (\(rejection.rawValue))")
        }
    }
}
