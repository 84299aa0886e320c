#if canImport(Glibc)
import Glibc
#endif

/// A `sockaddr_un` for a filesystem path, validated for length once.
public struct UnixSocketAddress: Sendable {
    /// The socket path.
    public let path: String
    private let storage: sockaddr_un

    /// The longest path `sockaddr_un` holds, without its terminating NUL.
    public static let maximumPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    public init(path: String) throws {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= Self.maximumPathLength else {
            throw HandoffWireError.pathTooLong(path)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        self.path = path
        self.storage = address
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length.
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        var address = self.storage
        let length = socklen_t(MemoryLayout<sa_family_t>.size + self.path.utf8.count + 1)
        return try withUnsafePointer(to: &address) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }
}
