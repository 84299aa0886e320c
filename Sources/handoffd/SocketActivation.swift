import Foundation
import HandoffWire

/// systemd's socket activation (`LISTEN_FDS`).
enum SocketActivation {
    /// The first inherited descriptor (3) when systemd passed exactly one socket to this process.
    static func inheritedDescriptor(environment: [String: String]) -> Int32? {
        guard let pid = environment["LISTEN_PID"], Int32(pid) == Syscall.processID,
            let count = environment["LISTEN_FDS"], Int(count) == 1
        else { return nil }
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
        return 3
    }
}
