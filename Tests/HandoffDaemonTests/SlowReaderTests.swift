import Foundation
import HandoffClientKit
import HandoffDaemon
import HandoffWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Clients that read slowly: a steady one gets everything however long it takes (the write
/// timeout measures progress, not the whole response); one that stops is cut after the write
/// timeout, and the daemon holds nothing for it afterwards.
@Suite struct SlowReaderTests {
    /// 180 KiB echoed back in 4 KiB events: far more than the small socket buffers below hold.
    private let prompt = String(repeating: "0123456789abcdef", count: 180 * 64)

    /// Hands off an echo of ``prompt`` over a connection with small socket buffers; returns
    /// the client's end.
    private func startEcho(on daemon: HandoffDaemon) throws -> OwnedDescriptor {
        let (client, server) = try FakeApache.tcpConnection()
        var size: CInt = 4096
        setsockopt(server.rawValue, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        setsockopt(client.rawValue, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        let json = try JSONSerialization.data(withJSONObject: ["prompt": self.prompt, "test_pattern": "echo"])
        try FakeApache.handOff(to: daemon.socketPath, payload: Array(json), descriptors: [server.rawValue])
        server.closeIfOpen()
        return client
    }

    private func configure(_ configuration: inout DaemonConfiguration) {
        // With these small buffers the window reopens only after the client has read ~32 KB,
        // about once a second at the pace below: the kernel takes nothing in between. The
        // timeout must exceed that gap, and the stream (~3.5 s) lasts longer than it.
        configuration.timeouts.write = .milliseconds(2500)
        configuration.limits.maxHandoffBytes = 256 * 1024
        configuration.mock = .init(messages: 3, interval: .milliseconds(1))
    }

    /// Reads `chunk` bytes every `pause` until end of stream or `limit`, on a thread of its own
    /// (a sleeping task on a busy cooperative pool keeps a far slower pace than asked).
    private func readSlowly(_ fd: CInt, chunk: Int, pauseMicroseconds: UInt32, limit: Duration) async throws -> (bytes: [UInt8], closed: Bool) {
        try await offThePool {
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: chunk)
            let deadline = ContinuousClock.now + limit
            while ContinuousClock.now < deadline {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, chunk, CInt(MSG_DONTWAIT)) }
                if count > 0 {
                    bytes.append(contentsOf: buffer[0..<count])
                } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                    return (bytes, true)
                }
                usleep(pauseMicroseconds)
            }
            return (bytes, false)
        }
    }

    @Test func aSteadySlowReaderGetsTheWholeStream() async throws {
        try await withDaemon(self.configure) { daemon, metrics in
            let client = try self.startEcho(on: daemon)
            defer { client.closeIfOpen() }
            // 512 bytes every 5 ms (about 50 KB/s in practice): the stream outlasts the write
            // timeout while the writes keep making progress.
            let fd = client.rawValue
            let (bytes, closed) = try await self.readSlowly(fd, chunk: 512, pauseMicroseconds: 5000, limit: .seconds(20))
            #expect(closed)
            let response = try #require(ReceivedResponse(bytes))
            #expect(response.eventBlocks.last?.prefix(80) == "data: [DONE]")
            let echoed = try response.eventBlocks.dropLast().map { block in
                let object = try JSONSerialization.jsonObject(with: Data(block.dropFirst(6).utf8)) as? [String: String]
                return object?["content"] ?? ""
            }.joined()
            #expect(echoed.count == self.prompt.count)
            #expect(echoed == self.prompt, "the echoed text differs")
            #expect(await eventually { metrics.counterTotal(label: "handoffd_streams_total", dimensions: [("outcome", "completed")]) == 1 })
        }
    }

    @Test func aReaderThatStopsIsCutAfterTheWriteTimeout() async throws {
        try await withDaemon(self.configure) { daemon, metrics in
            // Measured from before the handoff: the writes cannot stall before it, so the cut
            // comes at least the write timeout later, however late the polling below looks.
            let started = ContinuousClock.now
            let client = try self.startEcho(on: daemon)
            defer { client.closeIfOpen() }
            #expect(await eventually { daemon.heldClientDescriptors == 1 })
            #expect(await eventually(within: 8000) { daemon.heldClientDescriptors == 0 })
            #expect(ContinuousClock.now - started >= .milliseconds(2400))
            #expect(metrics.counterTotal(label: "handoffd_streams_total", dimensions: [("outcome", "write_timeout")]) == 1)
        }
    }
}
