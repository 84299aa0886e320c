#if canImport(Glibc)
import Glibc
#endif

/// The identity of the process at the other end of a Unix socket (`SO_PEERCRED`).
public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    /// The peer's process id at the time it connected.
    public var pid: Int32
    /// The peer's effective user id.
    public var uid: UInt32
    /// The peer's effective group id.
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "pid \(self.pid) uid \(self.uid) gid \(self.gid)" }
}
