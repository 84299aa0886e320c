import NIOCore

/// Why an upstream request failed, decided at the transport and mapped to what the client sees
/// by the backend (`502`/`504` before the head, an error event after it).
public struct UpstreamError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable failure kinds; the raw value is the `reason` clients and metrics see.
    public enum Kind: String, Sendable, Equatable {
        /// The connection could not be established (refused, DNS, TLS, ALPN).
        case connectFailed = "upstream_connect_failed"
        /// Connecting took longer than the connect timeout.
        case connectTimeout = "upstream_connect_timeout"
        /// No response head within the first-byte timeout.
        case firstByteTimeout = "upstream_timeout"
        /// No event for longer than the idle timeout.
        case idleTimeout = "upstream_idle_timeout"
        /// The stream ran longer than the maximum duration.
        case maxDuration = "max_duration"
        /// The upstream reset the stream or the connection went away.
        case reset = "upstream_reset"
        /// The body ended without the upstream's end marker.
        case truncated = "upstream_truncated"
        /// A frame or event could not be understood.
        case malformed = "upstream_malformed"
        /// The upstream sent an error object mid-stream.
        case upstreamReportedError = "upstream_error"
        /// The connection was retired (GOAWAY) before the stream could start.
        case goingAway = "upstream_going_away"
    }

    public var kind: Kind
    /// Detail for logs (errno text, frame, status).
    public var detail: String

    public init(_ kind: Kind, _ detail: String = "") {
        self.kind = kind
        self.detail = detail
    }

    public var description: String { self.detail.isEmpty ? self.kind.rawValue : "\(self.kind.rawValue): \(self.detail)" }
}

extension UpstreamError.Kind {
    /// Classifies a failed connect: a timeout, or anything else.
    init(connectError error: any Error) {
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            self = .connectTimeout
        } else {
            self = .connectFailed
        }
    }
}
