public import HandoffWire

#if canImport(Glibc)
import Glibc
#endif

/// Plays Apache's part of the protocol exactly as mod_socket_handoff does: a client socket, one
/// SEQPACKET connection per handoff, payload and descriptor in one `sendmsg`, then close.
public enum FakeApache {
    /// A real loopback TCP connection: `client` is the browser's end, `server` the end Apache
    /// accepted and hands off.
    public static func tcpConnection() throws -> (client: OwnedDescriptor, server: OwnedDescriptor) {
        try LoopbackListener(backlog: 1).connectedPair()
    }

    /// Connects to `path`, sends one handoff record and closes, like the module.
    ///
    /// - Parameters:
    ///   - payload: the `X-Handoff-Data` bytes; empty sends the protocol's single NUL.
    ///   - descriptors: normally one, the client socket; tests pass none or several.
    ///   - nulForEmpty: `false` sends a truly empty record.
    ///   - ackTimeoutMilliseconds: when given, ask for an acknowledged handoff and wait this
    ///     long for it, as the module does with `SocketHandoffAck On`.
    /// - Returns: how the acknowledged exchange ended; `nil` without one.
    @discardableResult
    public static func handOff(
        to path: String,
        payload: [UInt8],
        descriptors: [CInt],
        nulForEmpty: Bool = true,
        ackTimeoutMilliseconds: Int? = nil
    ) throws -> HandoffAckExchange.Outcome? {
        guard let connection = try HandoffSender.connect(to: path, requestingAck: ackTimeoutMilliseconds != nil) else {
            throw HandoffWireError.syscall("connect", errno: EAGAIN, context: path)
        }
        defer { connection.closeIfOpen() }
        guard try HandoffSender.send(on: connection.rawValue, payload: payload, descriptors: descriptors, nulForEmpty: nulForEmpty) else {
            throw HandoffWireError.syscall("sendmsg", errno: EAGAIN, context: path)
        }
        guard let ackTimeoutMilliseconds else { return nil }
        return HandoffSender.awaitAck(on: connection.rawValue, timeoutMilliseconds: ackTimeoutMilliseconds)
    }

    /// Convenience: hands off `json` with the client's server end, closing Apache's copy after.
    public static func handOff(to path: String, json: String, server: OwnedDescriptor) throws {
        try self.handOff(to: path, payload: Array(json.utf8), descriptors: [server.rawValue])
        server.closeIfOpen()
    }

    /// Reads from `fd` until end of stream or until `timeoutMilliseconds` pass without it.
    /// Returns what arrived and whether the stream ended (EOF or reset) in time.
    public static func readUntilClosed(_ fd: CInt, timeoutMilliseconds: Int) -> (bytes: [UInt8], closed: Bool) {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = monotonicMilliseconds() + timeoutMilliseconds
        while true {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { return (bytes, false) }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = Glibc.poll(&pfd, 1, Int32(left))
            if ready < 0 {
                if errno == EINTR { continue }
                return (bytes, true)
            }
            if ready == 0 { return (bytes, false) }
            let count = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 {
                bytes.append(contentsOf: buffer[0..<count])
            } else if count == 0 {
                return (bytes, true)
            } else if errno != EAGAIN && errno != EINTR {
                return (bytes, true)
            }
        }
    }

    /// Reads from `fd` until `bytes` contains `marker` or the time is up.
    public static func readUntil(_ marker: String, from fd: CInt, timeoutMilliseconds: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let needle = Array(marker.utf8)
        let deadline = monotonicMilliseconds() + timeoutMilliseconds
        while !bytes.containsSubsequence(needle) {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard Glibc.poll(&pfd, 1, Int32(left)) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 { bytes.append(contentsOf: buffer[0..<count]) } else if count == 0 { break }
        }
        return bytes
    }

    /// Milliseconds on the monotonic clock.
    public static func monotonicMilliseconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return now.tv_sec * 1000 + now.tv_nsec / 1_000_000
    }

}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs in the array.
    public func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= self.count else { return needle.isEmpty }
        for start in 0...(self.count - needle.count) where self[start] == needle[0] {
            if Array(self[start..<start + needle.count]) == needle { return true }
        }
        return false
    }
}
