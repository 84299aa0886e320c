/// Why a handoff's JSON was refused. Every case is answered `400 Bad Request`.
public struct HandoffRequestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable reason for metrics and logs.
    public struct Reason: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidJSON = "invalid_json"
            case wrongType = "wrong_type"
            case invalidValue = "invalid_value"
            case tooLarge = "field_too_large"
        }

        private let base: Base

        /// Not JSON, not UTF-8, or not an object.
        public static let invalidJSON = Reason(base: .invalidJSON)
        /// A known field holds the wrong type.
        public static let wrongType = Reason(base: .wrongType)
        /// A known field holds a value out of its range or form.
        public static let invalidValue = Reason(base: .invalidValue)
        /// A known field is over its size limit.
        public static let tooLarge = Reason(base: .tooLarge)

        public var description: String { self.base.rawValue }
    }

    /// The reason, for metrics.
    public var reason: Reason
    /// The offending field, when there is one (`messages[2].role`).
    public var field: String?
    /// A message safe to show the client.
    public var message: String

    public init(reason: Reason, field: String?, message: String) {
        self.reason = reason
        self.field = field
        self.message = message
    }

    public var description: String {
        guard let field else { return self.message }
        return "\(field): \(self.message)"
    }

    static func invalidJSON(_ message: String) -> Self {
        Self(reason: .invalidJSON, field: nil, message: message)
    }

    static func wrongType(_ field: String, expected: String) -> Self {
        Self(reason: .wrongType, field: field, message: "expected \(expected)")
    }

    static func invalidValue(_ field: String, _ message: String) -> Self {
        Self(reason: .invalidValue, field: field, message: message)
    }

    static func tooLarge(_ field: String, limit: Int, unit: String = "bytes") -> Self {
        Self(reason: .tooLarge, field: field, message: "over the limit of \(limit) \(unit)")
    }
}
