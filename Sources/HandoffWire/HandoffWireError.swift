#if canImport(Glibc)
import Glibc
#endif

/// A failure in the handoff wire layer: a syscall, an address, or the socket path.
///
/// The HTTP status a client sees is decided at the edge (the daemon), never here.
public struct HandoffWireError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as a stable code that callers switch on. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case syscall
            case pathTooLong
            case pathNotSocket
            case socketInUse
        }

        private let base: Base

        /// A syscall failed; `errno` holds its error number.
        public static let syscall = Code(base: .syscall)
        /// A Unix socket path does not fit in `sockaddr_un` (107 bytes plus NUL).
        public static let pathTooLong = Code(base: .pathTooLong)
        /// The socket path exists and is not a socket; we refuse to replace it.
        public static let pathNotSocket = Code(base: .pathNotSocket)
        /// A live listener already answers on the socket path.
        public static let socketInUse = Code(base: .socketInUse)

        public var description: String {
            switch self.base {
            case .syscall: "syscall"
            case .pathTooLong: "path-too-long"
            case .pathNotSocket: "path-not-socket"
            case .socketInUse: "socket-in-use"
            }
        }
    }

    /// The failure's code.
    public var code: Code
    /// What failed, with context (syscall name, path, descriptor).
    public var message: String
    /// The underlying `errno`, when a syscall failed.
    public var errno: CInt?
    /// Where the error was raised.
    public var file: String
    /// The line where the error was raised.
    public var line: Int

    public init(code: Code, message: String, errno: CInt? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.errno = errno
        self.file = file
        self.line = line
    }

    public var description: String {
        guard let errno else { return "\(self.message) [\(self.code)]" }
        return "\(self.message): \(String(cString: strerror(errno))) (errno \(errno)) [\(self.code)]"
    }

    /// A syscall failed with `errno`.
    public static func syscall(
        _ name: String,
        errno: CInt,
        context: String = "",
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        let message = context.isEmpty ? "\(name)() failed" : "\(name)() failed (\(context))"
        return Self(code: .syscall, message: message, errno: errno, file: file, line: line)
    }

    public static func pathTooLong(_ path: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(
            code: .pathTooLong,
            message: "Unix socket path is \(path.utf8.count) bytes, longer than the 107 allowed: \(path)",
            file: file,
            line: line
        )
    }

    public static func pathNotSocket(_ path: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(code: .pathNotSocket, message: "\(path) exists and is not a socket; refusing to replace it", file: file, line: line)
    }

    public static func socketInUse(_ path: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(
            code: .socketInUse,
            message: "another process is listening on \(path); refusing to take it over",
            file: file,
            line: line
        )
    }

    /// Equality ignores the source location.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.errno == rhs.errno
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.code)
        hasher.combine(self.message)
        hasher.combine(self.errno)
    }
}
