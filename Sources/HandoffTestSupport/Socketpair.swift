public import HandoffWire

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` with a connected `AF_UNIX`/`SOCK_STREAM` socketpair (blocking, close-on-exec)
/// and closes whatever ends the body did not give away.
public func withSocketpair<R>(_ body: (OwnedDescriptor, OwnedDescriptor) throws -> R) throws -> R {
    let (a, b) = try Syscall.socketpair(domain: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false)
    let first = OwnedDescriptor(taking: a)
    let second = OwnedDescriptor(taking: b)
    defer {
        first.closeIfOpen()
        second.closeIfOpen()
    }
    return try body(first, second)
}

/// Async variant of ``withSocketpair(_:)``.
public func withSocketpair<R>(_ body: (OwnedDescriptor, OwnedDescriptor) async throws -> R) async throws -> R {
    let (a, b) = try Syscall.socketpair(domain: AF_UNIX, type: Int32(SOCK_STREAM.rawValue), nonBlocking: false)
    let first = OwnedDescriptor(taking: a)
    let second = OwnedDescriptor(taking: b)
    defer {
        first.closeIfOpen()
        second.closeIfOpen()
    }
    return try await body(first, second)
}
