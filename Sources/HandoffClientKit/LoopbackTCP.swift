public import HandoffWire

#if canImport(Glibc)
import Glibc
#endif

/// Loopback TCP for clients that play a browser: a listener standing in for Apache's, and
/// connections to it (or to a real server).
public final class LoopbackListener {
    private let descriptor: OwnedDescriptor
    /// The port it listens on (127.0.0.1).
    public let port: Int

    /// Listens on 127.0.0.1 on a free port.
    public init(backlog: CInt = 4096) throws {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HandoffWireError.syscall("socket", errno: errno) }
        self.descriptor = OwnedDescriptor(taking: fd)
        var address = LoopbackTCP.address(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> CInt in
                guard Glibc.bind(fd, raw, length) == 0, Glibc.listen(fd, backlog) == 0 else { return -1 }
                return Glibc.getsockname(fd, raw, &length)
            }
        }
        guard bound == 0 else {
            let error = errno
            self.descriptor.closeIfOpen()
            throw HandoffWireError.syscall("bind/listen", errno: error, context: "127.0.0.1")
        }
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// A connected pair: `client` (non-blocking when asked) and the accepted `server` end.
    public func connectedPair(nonBlockingClient: Bool = false) throws -> (client: OwnedDescriptor, server: OwnedDescriptor) {
        let client = try LoopbackTCP.connect(port: self.port, nonBlocking: nonBlockingClient)
        do {
            guard let server = try Syscall.accept(self.descriptor.rawValue) else {
                throw HandoffWireError.syscall("accept4", errno: EAGAIN)
            }
            return (client, OwnedDescriptor(taking: server))
        } catch {
            client.closeIfOpen()
            throw error
        }
    }

    deinit {
        self.descriptor.closeIfOpen()
    }
}

/// TCP connections to 127.0.0.1.
public enum LoopbackTCP {
    static func address(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    /// Connects to 127.0.0.1:`port`; a non-blocking socket may still be connecting when this
    /// returns (loopback connects complete almost at once).
    public static func connect(port: Int, nonBlocking: Bool = false) throws -> OwnedDescriptor {
        var flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { flags |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = Glibc.socket(AF_INET, flags, 0)
        guard fd >= 0 else { throw HandoffWireError.syscall("socket", errno: errno) }
        let socket = OwnedDescriptor(taking: fd)
        var address = Self.address(port: port)
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result != 0, errno != EINPROGRESS {
            let error = errno
            socket.closeIfOpen()
            throw HandoffWireError.syscall("connect", errno: error, context: "127.0.0.1:\(port)")
        }
        return socket
    }
}
