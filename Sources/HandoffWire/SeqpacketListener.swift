import CHandoffShim

#if canImport(Glibc)
import Glibc
#endif

/// A listening `AF_UNIX`/`SOCK_SEQPACKET` socket, non-blocking, for receiving handoffs.
///
/// Created at a path (with stale-socket handling and permissions) or adopted from a
/// descriptor inherited through socket activation. Not `Sendable`: one thread owns it.
public final class SeqpacketListener {
    /// Where the socket lives, when known.
    public let path: String?
    /// Whether this listener created the path (and so may unlink it).
    public let ownsPath: Bool
    private let descriptor: OwnedDescriptor
    private let identity: FileIdentity?

    /// The listening descriptor, for epoll registration.
    public var rawDescriptor: CInt { self.descriptor.rawValue }

    /// Whether the descriptor is still open.
    public var isOpen: Bool { self.descriptor.isOpen }

    /// Binds a new listener at `path`.
    ///
    /// An existing path is replaced only when it is a socket that refuses connections (a stale
    /// socket from a crashed instance). A live socket, or anything that is not a socket, is
    /// never touched. The socket gets `mode` (and `group` when given) before `listen(2)`, so no
    /// peer can connect while its permissions are still the umask's.
    ///
    /// - Parameters:
    ///   - path: absolute path of the socket.
    ///   - mode: permission bits, e.g. `0o660`.
    ///   - group: group id to give the socket, or `nil` to keep the process's.
    ///   - backlog: `listen(2)` backlog (the kernel caps it at `net.core.somaxconn`).
    public static func bind(path: String, mode: UInt32 = 0o660, group: UInt32? = nil, backlog: CInt = 4096) throws -> SeqpacketListener {
        let address = try UnixSocketAddress(path: path)
        try Self.removeStaleSocket(at: address)
        let descriptor = OwnedDescriptor(taking: try Syscall.socket(domain: AF_UNIX, type: handoff_SOCK_SEQPACKET))
        do {
            try Syscall.bind(descriptor.rawValue, to: address)
            do {
                try Syscall.chmod(path, mode: mode_t(mode))
                if let group { try Syscall.chgrp(path, group: gid_t(group)) }
                let info = try Syscall.fstatPath(path)
                try Syscall.listen(descriptor.rawValue, backlog: backlog)
                return SeqpacketListener(descriptor: descriptor, path: path, ownsPath: true, identity: info)
            } catch {
                try? Syscall.unlink(path)
                throw error
            }
        } catch {
            descriptor.closeIfOpen()
            throw error
        }
    }

    /// Adopts an already-listening SEQPACKET socket: from systemd socket activation, a
    /// `--workers` supervisor, or a predecessor handing over at a reload.
    ///
    /// - Parameters:
    ///   - fd: the listening descriptor; this listener owns it from now on.
    ///   - path: where the socket lives, for logs.
    ///   - ownsPath: whether this process now owns the path and unlinks it when it stops (a
    ///     reload successor of a daemon that bound it); never for a service manager's socket.
    public static func adopt(descriptor fd: CInt, path: String? = nil, ownsPath: Bool = false) throws -> SeqpacketListener {
        let descriptor = OwnedDescriptor(taking: fd)
        do {
            let type = try Syscall.socketOption(fd, level: SOL_SOCKET, name: SO_TYPE)
            let listening = try Syscall.socketOption(fd, level: SOL_SOCKET, name: SO_ACCEPTCONN)
            guard type == handoff_SOCK_SEQPACKET, listening == 1 else {
                throw HandoffWireError(
                    code: .pathNotSocket,
                    message: "inherited fd \(fd) is not a listening SOCK_SEQPACKET socket (type \(type), listening \(listening))"
                )
            }
            try Syscall.setNonBlocking(fd)
            try Syscall.setCloseOnExec(fd)
            let identity = ownsPath ? path.flatMap { try? Syscall.fstatPath($0) } : nil
            return SeqpacketListener(descriptor: descriptor, path: path, ownsPath: identity != nil, identity: identity)
        } catch {
            descriptor.closeIfOpen()
            throw error
        }
    }

    private init(descriptor: OwnedDescriptor, path: String?, ownsPath: Bool, identity: FileIdentity?) {
        self.descriptor = descriptor
        self.path = path
        self.ownsPath = ownsPath
        self.identity = identity
    }

    /// Accepts one pending connection, non-blocking and close-on-exec; `nil` when none waits.
    public func accept() throws -> OwnedDescriptor? {
        try self.acceptConnection()?.connection
    }

    /// Accepts one pending connection like ``accept()``, also telling whether its sender asked
    /// for an acknowledged handoff (``HandoffAck``).
    public func acceptConnection() throws -> (connection: OwnedDescriptor, wantsAck: Bool)? {
        guard let accepted = try Syscall.acceptReportingAckRequest(self.descriptor.rawValue) else { return nil }
        return (OwnedDescriptor(taking: accepted.fd), accepted.wantsAck)
    }

    /// Removes the socket path if it still is the socket this listener created, so that a
    /// newer instance that has since bound the same path keeps its socket. Returns whether the
    /// path was unlinked. Safe to call more than once.
    @discardableResult
    public func unlinkPathIfOwned() -> Bool {
        guard self.ownsPath, let path = self.path, let identity = self.identity else { return false }
        guard let current = try? Syscall.fstatPath(path), current == identity else { return false }
        return (try? Syscall.unlink(path)) != nil
    }

    /// Closes the listening descriptor. Connections still in the backlog are reset by the kernel.
    public func close() {
        self.descriptor.closeIfOpen()
    }

    deinit {
        self.descriptor.closeIfOpen()
    }

    /// Unlinks `address.path` if it is a socket nobody listens on; throws if it is live or not
    /// a socket. A missing path is fine.
    static func removeStaleSocket(at address: UnixSocketAddress) throws {
        guard let info = try Syscall.lstat(address.path) else { return }
        guard handoff_mode_is_socket(UInt32(info.st_mode)) == 1 else {
            throw HandoffWireError.pathNotSocket(address.path)
        }
        let probe = OwnedDescriptor(taking: try Syscall.socket(domain: AF_UNIX, type: handoff_SOCK_SEQPACKET))
        defer { probe.closeIfOpen() }
        do {
            _ = try Syscall.connect(probe.rawValue, to: address)
            // Connected, in progress, or a full backlog (EAGAIN): somebody is listening.
            throw HandoffWireError.socketInUse(address.path)
        } catch let error as HandoffWireError where error.code == .syscall {
            switch error.errno {
            case ECONNREFUSED:
                try Syscall.unlink(address.path)
            case ENOENT:
                return
            default:
                // EPROTOTYPE: a stream or datagram socket of another program lives there.
                throw HandoffWireError.socketInUse(address.path)
            }
        }
    }
}

/// Identifies one socket file: device and inode, plus the change time, because a freshly
/// created socket often reuses the inode number of the one just unlinked. (The change time
/// ticks every few milliseconds; a replacement instance starts far slower than that.)
struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64
    var changeSeconds: Int
    var changeNanoseconds: Int
}

extension Syscall {
    /// The ``FileIdentity`` of `path` itself (not following a symlink).
    static func fstatPath(_ path: String) throws -> FileIdentity {
        guard let info = try Syscall.lstat(path) else {
            throw HandoffWireError.syscall("lstat", errno: ENOENT, context: path)
        }
        return FileIdentity(
            device: UInt64(info.st_dev),
            inode: UInt64(info.st_ino),
            changeSeconds: Int(info.st_ctim.tv_sec),
            changeNanoseconds: Int(info.st_ctim.tv_nsec)
        )
    }
}
