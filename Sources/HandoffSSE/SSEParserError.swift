/// Thrown by `SSEParser` when a stream exceeds its memory bounds.
public struct SSEParserError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Which bound was exceeded.
    public enum Reason: Sendable, Equatable {
        /// A line was longer than `SSEParser.maximumLineBytes`.
        case lineTooLong
        /// An event's data was larger than `SSEParser.maximumEventBytes`.
        case eventTooLarge
    }

    /// Which bound was exceeded.
    public var reason: Reason

    /// Creates an error with `reason`.
    public init(reason: Reason) {
        self.reason = reason
    }

    /// A line was longer than `SSEParser.maximumLineBytes`.
    public static var lineTooLong: Self { Self(reason: .lineTooLong) }
    /// An event's data was larger than `SSEParser.maximumEventBytes`.
    public static var eventTooLarge: Self { Self(reason: .eventTooLarge) }

    public var description: String {
        switch self.reason {
        case .lineTooLong: "SSE line too long"
        case .eventTooLarge: "SSE event too large"
        }
    }
}
