import HandoffWire
import Logging
import NIOCore

/// Hands each accepted handoff to one of the daemon's event loops, in turn.
///
/// Called on the acceptor thread. The client descriptor leaves the wire layer's ownership here;
/// on the loop a ``StreamSession`` adopts it (or answers a malformed handoff with a real HTTP
/// error) and closes it in the end.
// @unchecked Sendable: `next` is used only by the acceptor thread, the one caller of `launch`.
final class StreamLauncher: @unchecked Sendable {
    private let environment: StreamEnvironment
    private var next = 0

    init(environment: StreamEnvironment) {
        self.environment = environment
    }

    func launch(_ disposition: HandoffDisposition) {
        switch disposition {
        case .accepted(let client, let payload):
            self.adopt(client, admission: .handoff(payload: payload))
        case .answer(let client, let rejection):
            self.adopt(client, admission: .refused(Self.response(for: rejection), reason: rejection.rawValue))
        case .dropped:
            return
        }
    }

    private func adopt(_ client: OwnedDescriptor, admission: StreamSession.Admission) {
        let environment = self.environment
        let loop = environment.loops[self.next]
        self.next = (self.next + 1) % environment.loops.count
        environment.capacity.clientDescriptorTaken()
        let fd = client.takeDescriptorOwnership()
        loop.startSoon { StreamSession.start(fd: fd, admission: admission, environment: environment, loop: loop) }
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
