#if canImport(Glibc)
import Glibc
#endif

/// Sends a `sd_notify(3)` message (e.g. `READY=1`) to the service manager's datagram socket.
public enum SystemdNotifier {
    /// Sends `message` to the `NOTIFY_SOCKET` at `path` (a filesystem path).
    public static func send(_ message: String, to path: String) throws {
        let address = try UnixSocketAddress(path: path)
        let socket = OwnedDescriptor(taking: try Syscall.socket(domain: AF_UNIX, type: Int32(SOCK_DGRAM.rawValue)))
        defer { socket.closeIfOpen() }
        let bytes = Array(message.utf8)
        _ = try bytes.withUnsafeBytes { raw in
            try address.withSockAddr { pointer, length in
                try Syscall.retrying("sendto", context: path) {
                    Glibc.sendto(socket.rawValue, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL), pointer, length)
                }
            }
        }
    }
}
