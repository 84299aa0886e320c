/// Why a command got no reply from the server, or got an error reply.
public struct RedisError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Code: Sendable, Equatable {
        /// No connection now (connecting failed, or backing off after a failure).
        case unavailable
        /// The connection closed before the reply came.
        case connectionClosed
        /// No reply within the command timeout.
        case timeout
        /// The server answered with an error reply.
        case server
        /// The server sent something that is not RESP, or not the expected shape.
        case protocolViolation
        /// Too many commands wait for replies on this connection.
        case overloaded
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { self.message }
}
