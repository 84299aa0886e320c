/// The HTTP statuses handoffd answers with, and their reason phrases.
public struct HTTPStatus: Sendable, Hashable, CustomStringConvertible {
    /// The numeric code.
    public var code: Int
    /// The reason phrase.
    public var reason: String

    public init(code: Int, reason: String) {
        self.code = code
        self.reason = reason
    }

    public static let ok = Self(code: 200, reason: "OK")
    public static let noContent = Self(code: 204, reason: "No Content")
    public static let badRequest = Self(code: 400, reason: "Bad Request")
    public static let conflict = Self(code: 409, reason: "Conflict")
    public static let payloadTooLarge = Self(code: 413, reason: "Content Too Large")
    public static let tooManyRequests = Self(code: 429, reason: "Too Many Requests")
    public static let internalServerError = Self(code: 500, reason: "Internal Server Error")
    public static let notImplemented = Self(code: 501, reason: "Not Implemented")
    public static let badGateway = Self(code: 502, reason: "Bad Gateway")
    public static let serviceUnavailable = Self(code: 503, reason: "Service Unavailable")
    public static let gatewayTimeout = Self(code: 504, reason: "Gateway Timeout")

    public var description: String { "\(self.code) \(self.reason)" }
}
