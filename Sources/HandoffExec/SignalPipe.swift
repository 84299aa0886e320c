import HandoffWire

#if canImport(Glibc)
import Glibc
#endif

/// Signals turned into bytes on a pipe, so one epoll loop sees them with everything else. The
/// handler only writes the signal number (async-signal-safe); the loop reads and acts.
enum SignalPipe {
    // Written once before the handlers are installed, read only by them.
    nonisolated(unsafe) private static var writeEnd: CInt = -1
    nonisolated(unsafe) private static var readEnd: OwnedDescriptor?
    nonisolated(unsafe) private static var installed: [CInt] = []

    /// Installs handlers for `signals`; returns the pipe's read end (non-blocking). SIGPIPE is
    /// ignored, so a client gone before its answer is a failed write, not a dead server.
    static func install(_ signals: [CInt]) throws -> OwnedDescriptor {
        let (read, write) = try Syscall.pipe()
        try Syscall.setNonBlocking(read.rawValue)
        try Syscall.setNonBlocking(write.rawValue)
        Self.writeEnd = write.takeDescriptorOwnership()
        Self.readEnd = read
        Self.installed = signals
        signal(SIGPIPE, SIG_IGN)
        for number in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                var byte = UInt8(truncatingIfNeeded: number)
                _ = Glibc.write(SignalPipe.writeEnd, &byte, 1)
            }
            action.sa_flags = SA_RESTART | (number == SIGCHLD ? SA_NOCLDSTOP : 0)
            sigemptyset(&action.sa_mask)
            sigaction(number, &action, nil)
        }
        return read
    }

    /// Restores the default handlers and closes the pipe.
    static func uninstall() {
        for number in Self.installed { signal(number, SIG_DFL) }
        Self.installed = []
        Self.readEnd?.closeIfOpen()
        Self.readEnd = nil
        if Self.writeEnd >= 0 { _ = Glibc.close(Self.writeEnd) }
        Self.writeEnd = -1
    }

    /// The signals received since the last call.
    static func drain(_ pipe: OwnedDescriptor) -> [CInt] {
        var signals: [CInt] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(pipe.rawValue, $0.baseAddress, $0.count) }
            guard count > 0 else { return signals }
            signals += buffer[0..<count].map { CInt($0) }
        }
    }
}
