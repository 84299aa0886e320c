import CHandoffShim

#if canImport(Glibc)
import Glibc
#endif

/// Every syscall the wire layer makes, wrapped once: `EINTR` is retried (never for
/// `close`), `errno` is read immediately, failures throw ``HandoffWireError`` naming the
/// syscall, and non-blocking outcomes (`EAGAIN`) are part of the return type.
public enum Syscall {
    /// Runs `body` until it does not fail with `EINTR`. Returns the result or throws.
    @inline(__always)
    static func retrying<T: BinaryInteger>(_ name: String, context: @autoclosure () -> String = "", _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let error = Glibc.errno
            if error == EINTR { continue }
            throw HandoffWireError.syscall(name, errno: error, context: context())
        }
    }

    /// Like ``retrying(_:context:_:)`` but `EAGAIN`/`EWOULDBLOCK` yields `nil`.
    @inline(__always)
    static func retryingNonBlocking<T: BinaryInteger>(
        _ name: String,
        context: @autoclosure () -> String = "",
        _ body: () -> T
    ) throws -> T? {
        while true {
            let result = body()
            if result >= 0 { return result }
            let error = Glibc.errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return nil }
            throw HandoffWireError.syscall(name, errno: error, context: context())
        }
    }

    /// `close(2)`. Never retried: on Linux the descriptor is gone even when `EINTR` is reported.
    public static func close(_ fd: CInt) throws {
        if Glibc.close(fd) != 0 {
            let error = Glibc.errno
            if error == EINTR { return }
            throw HandoffWireError.syscall("close", errno: error, context: "fd \(fd)")
        }
    }

    /// `socket(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`.
    public static func socket(domain: CInt, type: CInt) throws -> CInt {
        try retrying("socket") { handoff_socket_nonblocking(domain, type, 0) }
    }

    /// `socketpair(2)` with `SOCK_CLOEXEC` (and `SOCK_NONBLOCK` when asked).
    public static func socketpair(domain: CInt, type: CInt, nonBlocking: Bool) throws -> (CInt, CInt) {
        var pair: [CInt] = [-1, -1]
        _ = try retrying("socketpair") { handoff_socketpair(domain, type, nonBlocking ? 1 : 0, &pair) }
        return (pair[0], pair[1])
    }

    /// `poll(2)` for readability (or hang-up, or an error) of one descriptor; `false` when the
    /// time ran out. Retries `EINTR` with the time that is left.
    public static func waitReadable(_ fd: CInt, timeoutMilliseconds: Int) throws -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        while true {
            let left = max(0, ((deadline - ContinuousClock.now) / .milliseconds(1)).rounded(.up))
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = Glibc.poll(&entry, 1, CInt(left))
            if ready >= 0 { return ready > 0 }
            let error = Glibc.errno
            guard error == EINTR else { throw HandoffWireError.syscall("poll", errno: error, context: "fd \(fd)") }
        }
    }

    /// `bind(2)` to a Unix socket path.
    public static func bind(_ fd: CInt, to address: UnixSocketAddress) throws {
        _ = try address.withSockAddr { pointer, length in
            try retrying("bind", context: address.path) { Glibc.bind(fd, pointer, length) }
        }
    }

    /// `listen(2)`.
    public static func listen(_ fd: CInt, backlog: CInt) throws {
        _ = try retrying("listen", context: "fd \(fd)") { Glibc.listen(fd, backlog) }
    }

    /// `accept4(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`; `nil` when nothing is pending.
    public static func accept(_ fd: CInt) throws -> CInt? {
        try retryingNonBlocking("accept4", context: "fd \(fd)") { handoff_accept_nonblocking(fd) }
    }

    /// `accept4(2)` like ``accept(_:)``, also telling whether the peer asked for an acknowledged
    /// handoff (its abstract address starts with ``HandoffAck/marker``).
    public static func acceptReportingAckRequest(_ fd: CInt) throws -> (fd: CInt, wantsAck: Bool)? {
        var marked: CInt = 0
        guard let accepted = try retryingNonBlocking("accept4", context: "fd \(fd)", { handoff_accept_nonblocking_marked(fd, &marked) }) else {
            return nil
        }
        return (accepted, marked != 0)
    }

    /// Binds an unbound Unix socket to a fresh abstract address carrying ``HandoffAck/marker``.
    public static func bindAckMarker(_ fd: CInt) throws {
        while true {
            if handoff_bind_ack_marker(fd, UInt64.random(in: 0...UInt64.max)) == 0 { return }
            let error = Glibc.errno
            if error == EADDRINUSE || error == EINTR { continue }
            throw HandoffWireError.syscall("bind", errno: error, context: "abstract ack address")
        }
    }

    /// The outcome of a non-blocking `connect(2)`.
    public enum ConnectOutcome: Sendable, Hashable {
        /// Connected (Unix sockets connect at once).
        case connected
        /// `EINPROGRESS`: wait for writability, then read `SO_ERROR`.
        case inProgress
        /// `EAGAIN`: the listener's backlog is full (Linux, Unix sockets).
        case wouldBlock
    }

    /// `connect(2)` on a non-blocking socket to a Unix path.
    public static func connect(_ fd: CInt, to address: UnixSocketAddress) throws -> ConnectOutcome {
        try address.withSockAddr { pointer, length in
            while true {
                if Glibc.connect(fd, pointer, length) == 0 { return .connected }
                let error = Glibc.errno
                switch error {
                case EINTR: continue
                case EINPROGRESS: return .inProgress
                case EAGAIN: return .wouldBlock
                default: throw HandoffWireError.syscall("connect", errno: error, context: address.path)
                }
            }
        }
    }

    /// `sendmsg(2)`; `nil` when the socket would block.
    static func sendmsg(_ fd: CInt, _ message: UnsafePointer<msghdr>, flags: CInt) throws -> Int? {
        try retryingNonBlocking("sendmsg", context: "fd \(fd)") { Glibc.sendmsg(fd, message, flags) }
    }

    /// `recvmsg(2)`; `nil` when nothing is there yet.
    static func recvmsg(_ fd: CInt, _ message: UnsafeMutablePointer<msghdr>, flags: CInt) throws -> Int? {
        try retryingNonBlocking("recvmsg", context: "fd \(fd)") { Glibc.recvmsg(fd, message, flags) }
    }

    /// `read(2)`; `nil` when it would block, `0` at end of stream.
    public static func read(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        try retryingNonBlocking("read", context: "fd \(fd)") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// `write(2)` (as `send` with `MSG_NOSIGNAL` for sockets); `nil` when it would block.
    public static func send(_ fd: CInt, _ buffer: UnsafeRawBufferPointer) throws -> Int? {
        try retryingNonBlocking("send", context: "fd \(fd)") {
            Glibc.send(fd, buffer.baseAddress, buffer.count, handoff_MSG_NOSIGNAL)
        }
    }

    /// `write(2)`; `nil` when it would block.
    public static func write(_ fd: CInt, _ buffer: UnsafeRawBufferPointer) throws -> Int? {
        try retryingNonBlocking("write", context: "fd \(fd)") { Glibc.write(fd, buffer.baseAddress, buffer.count) }
    }

    /// Sets `O_NONBLOCK` on `fd` if it is not set yet.
    public static func setNonBlocking(_ fd: CInt) throws {
        let flags = try retrying("fcntl(F_GETFL)", context: "fd \(fd)") { fcntl(fd, F_GETFL) }
        guard flags & O_NONBLOCK == 0 else { return }
        _ = try retrying("fcntl(F_SETFL)", context: "fd \(fd)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// `shutdown(2)`.
    public static func shutdown(_ fd: CInt, how: CInt) throws {
        _ = try retrying("shutdown", context: "fd \(fd)") { Glibc.shutdown(fd, how) }
    }

    /// `getsockopt(2)` for an `int`-valued option.
    public static func socketOption(_ fd: CInt, level: CInt, name: CInt) throws -> CInt {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        _ = try retrying("getsockopt", context: "fd \(fd)") { Glibc.getsockopt(fd, level, name, &value, &length) }
        return value
    }

    /// Whether the socket has a peer: `getpeername(2)` succeeds. `ENOTCONN` yields `false`.
    public static func isConnected(_ fd: CInt) throws -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.getpeername(fd, $0, &length) }
        }
        if result == 0 { return true }
        let error = Glibc.errno
        if error == ENOTCONN { return false }
        throw HandoffWireError.syscall("getpeername", errno: error, context: "fd \(fd)")
    }

    /// `SO_PEERCRED` of a connected Unix socket.
    public static func peerCredentials(_ fd: CInt) throws -> PeerCredentials {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        _ = try retrying("getsockopt(SO_PEERCRED)", context: "fd \(fd)") { handoff_peer_credentials(fd, &pid, &uid, &gid) }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    /// `lstat(2)`; `nil` when the path does not exist.
    static func lstat(_ path: String) throws -> stat? {
        var info = stat()
        if Glibc.lstat(path, &info) == 0 { return info }
        let error = Glibc.errno
        if error == ENOENT { return nil }
        throw HandoffWireError.syscall("lstat", errno: error, context: path)
    }

    /// `openat(2)` with `O_CLOEXEC` added to `flags`.
    public static func openAt(_ directory: CInt, _ name: String, flags: CInt) throws -> CInt {
        try retrying("openat", context: name) { Glibc.openat(directory, name, flags | O_CLOEXEC) }
    }

    /// What `fstat(2)` says of an open file, as far as callers need it.
    public struct FileStatus: Sendable {
        /// A regular file (not a directory, FIFO, device or socket).
        public var isRegularFile: Bool
        /// Size in bytes.
        public var size: Int
    }

    /// `fstat(2)`.
    public static func fileStatus(_ fd: CInt) throws -> FileStatus {
        var info = stat()
        _ = try retrying("fstat", context: "fd \(fd)") { Glibc.fstat(fd, &info) }
        return FileStatus(isRegularFile: info.st_mode & S_IFMT == S_IFREG, size: Int(info.st_size))
    }

    /// `read(2)` into `buffer` until it is full or the file ends (a blocking descriptor).
    /// Returns the bytes read.
    public static func readFully(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var total = 0
        while total < buffer.count {
            let count = try retrying("read", context: "fd \(fd)") { Glibc.read(fd, buffer.baseAddress! + total, buffer.count - total) }
            if count == 0 { break }
            total += count
        }
        return total
    }

    /// `unlinkat(2)` of a file in `directory`; a missing name is not an error.
    public static func unlinkAt(_ directory: CInt, _ name: String) throws {
        if Glibc.unlinkat(directory, name, 0) == 0 { return }
        let error = Glibc.errno
        if error == ENOENT { return }
        throw HandoffWireError.syscall("unlinkat", errno: error, context: name)
    }

    /// `unlink(2)`; a missing path is not an error.
    public static func unlink(_ path: String) throws {
        if Glibc.unlink(path) == 0 { return }
        let error = Glibc.errno
        if error == ENOENT { return }
        throw HandoffWireError.syscall("unlink", errno: error, context: path)
    }

    /// `chmod(2)`.
    static func chmod(_ path: String, mode: mode_t) throws {
        _ = try retrying("chmod", context: path) { Glibc.chmod(path, mode) }
    }

    /// `chown(2)` changing only the group.
    static func chgrp(_ path: String, group: gid_t) throws {
        _ = try retrying("chown", context: path) { Glibc.chown(path, uid_t.max, group) }
    }

    /// `epoll_create1(EPOLL_CLOEXEC)`.
    static func epollCreate() throws -> CInt {
        try retrying("epoll_create1") { handoff_epoll_create() }
    }

    /// `epoll_ctl(2)` with `data.u64`.
    static func epollControl(_ epfd: CInt, operation: CInt, fd: CInt, events: UInt32, data: UInt64) throws {
        _ = try retrying("epoll_ctl", context: "fd \(fd)") { handoff_epoll_ctl(epfd, operation, fd, events, data) }
    }

    /// `epoll_wait(2)`; `EINTR` yields zero events so the caller re-checks its deadlines.
    static func epollWait(
        _ epfd: CInt,
        events: UnsafeMutablePointer<UInt32>,
        data: UnsafeMutablePointer<UInt64>,
        maximum: CInt,
        timeoutMilliseconds: CInt
    ) throws -> Int {
        let result = handoff_epoll_wait(epfd, events, data, maximum, timeoutMilliseconds)
        if result >= 0 { return Int(result) }
        let error = Glibc.errno
        if error == EINTR { return 0 }
        throw HandoffWireError.syscall("epoll_wait", errno: error)
    }

    /// Waits on the futex `word` while it holds `expected`, until woken or `deadline`
    /// (nanoseconds on the monotonic clock). True after a wake-up, a changed word or a signal
    /// (the caller looks at the word again); false once the deadline passed, or when the wait
    /// failed otherwise (so a caller never spins on a futex that cannot wait).
    public static func futexWait(_ word: UnsafeMutablePointer<UInt32>, whileHolding expected: UInt32, untilMonotonic deadline: UInt64) -> Bool {
        var until = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return handoff_futex_wait_until(word, expected, &until) == 0 || errno == EAGAIN || errno == EINTR
    }

    /// Wakes one thread waiting on the futex `word`.
    public static func futexWake(_ word: UnsafeMutablePointer<UInt32>) {
        _ = handoff_futex_wake_one(word)
    }

    /// Sleeps `nanoseconds` on the monotonic clock (a signal may end it early).
    public static func sleep(nanoseconds: UInt64) {
        var length = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        _ = clock_nanosleep(CLOCK_MONOTONIC, 0, &length, nil)
    }

    /// The monotonic clock, in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// `eventfd(2)` with `EFD_NONBLOCK | EFD_CLOEXEC`.
    public static func eventfd() throws -> CInt {
        try retrying("eventfd") { handoff_eventfd() }
    }

    /// The soft `RLIMIT_NOFILE`.
    public static func openFileLimit() throws -> Int {
        var limit = rlimit()
        _ = try retrying("getrlimit") { Glibc.getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        return limit.rlim_cur >= rlim_t(Int32.max) ? Int(Int32.max) : Int(limit.rlim_cur)
    }

    /// `getpid(2)`.
    public static var processID: Int32 { Glibc.getpid() }
}

extension Syscall {
    /// Starts `path` with `arguments` and `environment` via `posix_spawn`, with each of
    /// `descriptors` available in the child at its target number (close-on-exec cleared there;
    /// every other descriptor of ours is close-on-exec). With `closeFrom`, the child also
    /// closes every descriptor from that number up, even ones this process inherited without
    /// close-on-exec. With `newProcessGroup`, the child leads a process group of its own (so
    /// signalling `-pid` reaches whatever it starts). The child starts with no signal blocked
    /// and every signal at its default action, whatever this process ignores or masks.
    public static func spawn(
        path: String,
        arguments: [String],
        environment: [String: String],
        descriptors: [(source: CInt, target: CInt)] = [],
        closeFrom: CInt? = nil,
        newProcessGroup: Bool = false
    ) throws -> Int32 {
        // Park the sources above every target first, so no dup2 overwrites a later source.
        var parked: [CInt] = []
        defer { parked.forEach { _ = Glibc.close($0) } }
        for entry in descriptors {
            parked.append(try retrying("fcntl", context: "F_DUPFD_CLOEXEC fd \(entry.source)") { Glibc.fcntl(entry.source, F_DUPFD_CLOEXEC, 100) })
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (source, entry) in zip(parked, descriptors) {
            posix_spawn_file_actions_adddup2(&actions, source, entry.target)
        }
        if let closeFrom { _ = handoff_spawn_close_from(&actions, closeFrom) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        var all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard result == 0 else { throw HandoffWireError.syscall("posix_spawn", errno: result, context: path) }
        return pid
    }

    /// Sets `FD_CLOEXEC` on `fd` (an inherited descriptor must not reach our own children).
    public static func setCloseOnExec(_ fd: CInt) throws {
        let flags = try retrying("fcntl", context: "F_GETFD fd \(fd)") { Glibc.fcntl(fd, F_GETFD) }
        _ = try retrying("fcntl", context: "F_SETFD fd \(fd)") { Glibc.fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }

    /// `pipe2(2)` with `O_CLOEXEC`: the read end and the write end.
    public static func pipe() throws -> (read: OwnedDescriptor, write: OwnedDescriptor) {
        var ends: [CInt] = [-1, -1]
        _ = try retrying("pipe2") { ends.withUnsafeMutableBufferPointer { handoff_pipe_cloexec($0.baseAddress) } }
        return (OwnedDescriptor(taking: ends[0]), OwnedDescriptor(taking: ends[1]))
    }

    /// Reaps `pid` if it has exited, without blocking: whether it exited cleanly, or `nil` while it runs.
    public static func reap(_ pid: Int32) -> Bool? {
        var status: CInt = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return status & 0x7F == 0 && (status >> 8) & 0xFF == 0
    }

    /// Reaps one exited child without blocking: its pid and whether it exited cleanly.
    public static func reapChild() -> (pid: Int32, exitedCleanly: Bool)? {
        var status: CInt = 0
        let pid = waitpid(-1, &status, WNOHANG)
        guard pid > 0 else { return nil }
        // WIFEXITED/WEXITSTATUS are macros: exited normally when the low 7 bits are 0.
        return (pid, status & 0x7F == 0 && (status >> 8) & 0xFF == 0)
    }

    /// Sends `signal` to `pid`.
    public static func kill(_ pid: Int32, signal: CInt) {
        _ = Glibc.kill(pid, signal)
    }

    /// Names the calling thread for the kernel (`top -H`, `/proc/<pid>/task/*/comm`, perf);
    /// the kernel keeps at most 15 bytes.
    public static func nameCurrentThread(_ name: String) {
        _ = handoff_name_current_thread(String(decoding: name.utf8.prefix(15), as: UTF8.self))
    }
}
