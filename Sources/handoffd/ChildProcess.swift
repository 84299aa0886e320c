import Foundation
import HandoffWire

/// A copy of this executable started on our listening socket: a reload's successor, or one of a
/// supervisor's workers.
///
/// The child gets the socket as descriptor 3 (`HANDOFFD_LISTEN_FD`) and the write end of a pipe
/// as descriptor 4 (`HANDOFFD_READY_FD`), on which it writes one byte once it accepts handoffs
/// (``ReadinessReport``). A child that exits first closes the pipe unwritten, so the parent
/// learns of a failed start at once, without a timeout.
struct ChildProcess {
    static let listenDescriptorVariable = "HANDOFFD_LISTEN_FD"
    static let readyDescriptorVariable = "HANDOFFD_READY_FD"
    static let ownsPathVariable = "HANDOFFD_OWNS_SOCKET_PATH"
    /// Variables a parent's environment may carry that must not reach a child unchanged.
    static let handoverVariables = [
        listenDescriptorVariable, readyDescriptorVariable, ownsPathVariable, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
    ]

    let pid: Int32
    private let ready: OwnedDescriptor

    /// Starts `executable` with the listening socket and a readiness pipe.
    static func start(executable: String, arguments: [String], environment: [String: String], listener: CInt) throws -> ChildProcess {
        let pipe = try Syscall.pipe()
        defer { pipe.write.closeIfOpen() }
        var environment = environment
        environment[Self.listenDescriptorVariable] = "3"
        environment[Self.readyDescriptorVariable] = "4"
        do {
            let pid = try Syscall.spawn(
                path: executable,
                arguments: arguments,
                environment: environment,
                descriptors: [(listener, 3), (pipe.write.rawValue, 4)]
            )
            return ChildProcess(pid: pid, ready: pipe.read)
        } catch {
            pipe.read.closeIfOpen()
            throw error
        }
    }

    /// Waits until the child reports that it accepts handoffs. Returns `nil` then, or why not:
    /// it exited (or closed the pipe) first, or `timeout` passed.
    nonisolated(nonsending) func waitUntilReady(timeout: Duration) async -> String? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? Syscall.waitReadable(self.ready.rawValue, timeoutMilliseconds: 0)) == true {
                var byte: UInt8 = 0
                let count = try? withUnsafeMutableBytes(of: &byte) { try Syscall.read(self.ready.rawValue, into: $0) }
                if count == 1 { return nil }
                return "process \(self.pid) exited before it accepted handoffs (see its log)"
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return "process \(self.pid) did not report ready within \(timeout)"
    }

    /// Closes the parent's end of the readiness pipe.
    func close() {
        self.ready.closeIfOpen()
    }
}

/// The child's side of ``ChildProcess``: report once that this process accepts handoffs.
enum ReadinessReport {
    /// Takes the readiness descriptor out of the environment (close-on-exec, so it reaches no
    /// grandchild); `nil` when this process was not started by a parent that waits for it.
    static func descriptor(environment: [String: String]) -> CInt? {
        guard let fd = environment[ChildProcess.readyDescriptorVariable].flatMap(CInt.init), fd >= 0,
            (try? Syscall.setCloseOnExec(fd)) != nil
        else { return nil }
        return fd
    }

    /// Writes the one byte and closes the descriptor.
    static func send(on fd: CInt) {
        let byte: UInt8 = 1
        _ = withUnsafeBytes(of: byte) { try? Syscall.write(fd, $0) }
        _ = try? Syscall.close(fd)
    }
}
