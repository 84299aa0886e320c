#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor with exactly one owner.
///
/// The owner either closes it (``close()``, exactly once) or gives it away explicitly
/// (``takeDescriptorOwnership()``), for example to a NIO channel that will close it. An open
/// descriptor reaching `deinit` is a leak: debug builds stop on it, release builds close it.
///
/// Not `Sendable`: ownership moves between threads only as the raw value returned by
/// ``takeDescriptorOwnership()``.
public final class OwnedDescriptor: CustomStringConvertible {
    private var fd: CInt

    /// Takes ownership of `fd`, which must be open.
    public init(taking fd: CInt) {
        precondition(fd >= 0, "OwnedDescriptor needs an open descriptor, got \(fd)")
        self.fd = fd
    }

    /// Whether this owner still holds the descriptor.
    public var isOpen: Bool { self.fd >= 0 }

    /// The raw descriptor, for syscalls. The caller must not close it or keep it.
    public var rawValue: CInt {
        precondition(self.fd >= 0, "descriptor used after close or hand-over")
        return self.fd
    }

    /// Gives the descriptor away: the caller now owns it and this object forgets it.
    public func takeDescriptorOwnership() -> CInt {
        precondition(self.fd >= 0, "descriptor taken after close or hand-over")
        defer { self.fd = -1 }
        return self.fd
    }

    /// Closes the descriptor. Closing twice is a programming error.
    public func close() throws {
        let fd = self.takeDescriptorOwnership()
        try Syscall.close(fd)
    }

    /// Closes the descriptor if this owner still holds it, ignoring errors: for error paths.
    public func closeIfOpen() {
        guard self.fd >= 0 else { return }
        try? self.close()
    }

    public var description: String { self.fd >= 0 ? "fd \(self.fd)" : "fd (closed)" }

    deinit {
        if self.fd >= 0 {
            assertionFailure("leaked open descriptor \(self.fd)")
            Glibc.close(self.fd)
        }
    }
}
