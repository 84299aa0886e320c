import Foundation
import HandoffClientKit
import HandoffDaemon
import HandoffHTTP2
import HandoffMockLLM
import HandoffTestSupport
import HandoffWire
import Logging
import NIOCore
import NIOPosix
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// HTTP/2 faults between handoffd and its upstream: what one stream does to its siblings on
/// the same connection, and what a refusal costs the client (nothing, when it is retried).
@Suite struct HTTP2UpstreamFaultTests {
    /// A mock LLM over h2c with `chunks` chunks `delay` apart, and upstream settings for it
    /// (one connection, so siblings share it).
    private func withMock<R>(
        chunks: Int = 20,
        delay: TimeAmount = .milliseconds(10),
        adjust: (inout UpstreamSettings) -> Void = { _ in },
        _ body: (MockLLMServer, UpstreamSettings) async throws -> R
    ) async throws -> R {
        try await withMockLLM(.h2c, chunks: chunks, delay: delay) { mock, settings in
            var settings = settings
            settings.maxConnections = 1
            adjust(&settings)
            return try await body(mock, settings)
        }
    }

    private func configure(_ settings: UpstreamSettings) -> (inout DaemonConfiguration) -> Void {
        { configuration in
            configuration.openAI = OpenAIBackend(upstream: settings)
            configuration.eventLoops = 1
        }
    }

    private func complete(_ response: ReceivedResponse?) -> Bool {
        response?.status == 200 && response?.events?.last?.data == "[DONE]"
    }

    private func json(_ pattern: String) -> String {
        #"{"backend":"openai","prompt":"x","test_pattern":"\#(pattern)"}"#
    }

    /// A plain handoff's answer must be the error `status` naming `error`, within `bound`.
    private func expectError(from daemon: HandoffDaemon, status: Int, _ error: String, within bound: Duration) async throws {
        let started = ContinuousClock.now
        let response = try await exchange(daemon, payload: Array(self.json("plain").utf8), timeoutMilliseconds: 20_000).response
        let waited = ContinuousClock.now - started
        #expect(response?.status == status)
        #expect(response?.body.contains(error) == true, "\(response?.body ?? "no response")")
        #expect(waited < bound, "answered after \(waited)")
    }

    @Test func aStreamLevelErrorEndsOnlyThatStream() async throws {
        try await self.withMock { _, settings in
            try await withDaemon(self.configure(settings)) { daemon, _ in
                async let first = exchange(daemon, json: self.json("plain"))
                async let second = exchange(daemon, json: self.json("plain"))
                try await Task.sleep(for: .milliseconds(50))
                let broken = try await exchange(daemon, json: self.json("overlong")).response
                #expect(broken?.status == 200)
                #expect(broken?.events?.last?.event == "error")
                let (one, two) = (try await first.response, try await second.response)
                #expect(self.complete(one), "\(one?.events?.last?.data ?? "no events")")
                #expect(self.complete(two), "\(two?.events?.last?.data ?? "no events")")
            }
        }
    }

    /// Request bodies that add up to more than a connection's first window (65 535 bytes): the
    /// server gives the connection's window back, and every stream on the one connection is served.
    @Test func requestBodiesPastTheFirstConnectionWindowAreAllServed() async throws {
        try await self.withMock(chunks: 1, delay: .milliseconds(1)) { mock, settings in
            try await withDaemon(self.configure(settings)) { daemon, _ in
                let prompt = String(repeating: "p", count: 4000)
                for _ in 0..<24 {
                    let response = try await exchange(daemon, json: #"{"backend":"openai","prompt":"\#(prompt)"}"#).response
                    #expect(self.complete(response))
                }
                #expect(mock.stats.totals.completed == 24)
            }
        }
    }

    /// An upstream that takes the TCP connection and never speaks HTTP/2 (no SETTINGS): the
    /// connect timeout covers the whole handshake, so the client gets a 504 then, not at the
    /// first-byte timeout, and the connection is given up rather than kept "connecting" for ever.
    @Test func anUpstreamThatNeverSendsSettingsTimesOutAtTheConnectTimeout() async throws {
        let silent = try LoopbackListener()
        var settings = UpstreamSettings(endpoint: try UpstreamEndpoint(url: "http://127.0.0.1:\(silent.port)"), httpVersion: .http2, connectTimeout: .milliseconds(300))
        settings.maxConnections = 1
        try await withDaemon(self.configure(settings)) { daemon, _ in
            // 0.3 s here; the bound leaves room for the suite's cold start and is far below the
            // 60 s first-byte timeout the stream waited for before.
            try await self.expectError(from: daemon, status: 504, "upstream_connect_timeout", within: .seconds(10))
            #expect(await eventually { daemon.upstreamConnections == 0 })
        }
    }

    /// An upstream that asks for answers (PINGs) and reads none of them is cut off (GOAWAY
    /// ENHANCE_YOUR_CALM) once its socket takes no more, instead of the daemon buffering answers
    /// for as long as the flood lasts; the stream waiting on it gets a 502 at once. Over a Unix
    /// socket the kernel holds about 200 KiB for a peer that does not read (loopback TCP would
    /// hold 4 MiB, a long flood for a test).
    @Test func anUpstreamFloodingPingsWithoutReadingIsCutOff() async throws {
        try await withTemporaryDirectory { directory in
            let flooder = try PingFlooder(path: directory + "/upstream.sock")
            var settings = UpstreamSettings(
                endpoint: try UpstreamEndpoint(url: "http://localhost", unixSocketPath: flooder.path), httpVersion: .http2, connectTimeout: .seconds(5)
            )
            settings.maxConnections = 1
            try await withDaemon(self.configure(settings)) { daemon, _ in
                async let flood = onThread { flooder.flood(for: .seconds(10)) }
                // Before the flood ends (10 s), or it was the flood's end that ended the stream.
                try await self.expectError(from: daemon, status: 502, "upstream_reset", within: .seconds(8))
                let outcome = try await flood
                #expect(outcome.cutOff, "the daemon kept answering \(outcome.pings) PINGs it could not send")
            }
        }
    }

    /// Requests that wait while the upstream reads nothing leave once it reads again: the
    /// socket's writability, not the next frame from the server, sends them. 12 requests of
    /// about 100 KB go to an upstream that pauses reading for 2 s; the kernel and NIO take the
    /// first four, the other eight wait. The server then reads and answers only whole
    /// requests, and sends nothing before it has them all, so no inbound frame can push them
    /// out instead.
    @Test func requestsWaitingForAnUpstreamThatPausedReadingLeaveWhenItReadsAgain() async throws {
        try await withTemporaryDirectory { directory in
            let upstream = try PausingReader(path: directory + "/upstream.sock")
            defer { upstream.close() }
            var settings = UpstreamSettings(
                endpoint: try UpstreamEndpoint(url: "http://localhost", unixSocketPath: upstream.path), httpVersion: .http2, connectTimeout: .seconds(5)
            )
            settings.maxConnections = 1
            try await withDaemon(self.configure(settings)) { daemon, _ in
                let streams = 12
                async let served = onThread { upstream.serve(expecting: streams, pause: .seconds(2), within: .seconds(8)) }
                let prompt = String(repeating: "p", count: 100_000)
                var clients: [OwnedDescriptor] = []
                defer { for client in clients { client.closeIfOpen() } }
                for index in 0..<streams {
                    // The first four fill the socket and NIO's buffer; the rest come once the
                    // connection is no longer writable, and wait in the daemon's HTTP/2 output.
                    if index == 4 { try await Task.sleep(for: .milliseconds(300)) }
                    let (client, server) = try FakeApache.tcpConnection()
                    clients.append(client)
                    try FakeApache.handOff(to: daemon.socketPath, json: #"{"backend":"openai","prompt":"\#(prompt)"}"#, server: server)
                }
                #expect(try await served == streams, "the upstream got only some of the requests")
                for client in clients {
                    let fd = client.rawValue
                    let (bytes, _) = try await offThePool { FakeApache.readUntilClosed(fd, timeoutMilliseconds: 5000) }
                    #expect(self.complete(ReceivedResponse(bytes)))
                }
            }
        }
    }

    /// A daemon that stops closes its upstream connections with a GOAWAY first, so the server
    /// knows no request was lost in flight.
    @Test func aStoppingDaemonSaysGoAwayToItsUpstream() async throws {
        try await self.withMock { mock, settings in
            try await withDaemon(self.configure(settings)) { daemon, _ in
                let response = try await exchange(daemon, json: self.json("plain")).response
                #expect(self.complete(response))
                #expect(mock.stats.goAwaysReceived == 0)
            }
            #expect(await eventually { mock.stats.goAwaysReceived == 1 })
        }
    }

    @Test func aRefusedStreamIsRetriedOnAnotherAttempt() async throws {
        try await self.withMock(chunks: 3) { mock, settings in
            try await withDaemon(self.configure(settings)) { daemon, _ in
                let response = try await exchange(daemon, json: self.json("refuse-once:\(UUID().uuidString)")).response
                #expect(self.complete(response))
                #expect(mock.stats.totals.requests == 2)
            }
        }
    }

    @Test func aStreamAboveTheGoAwayLastStreamIDIsRetriedOnANewConnection() async throws {
        try await self.withMock(chunks: 3) { mock, settings in
            try await withDaemon(self.configure(settings)) { daemon, _ in
                // A first stream, so the refused one is not stream 1 (GOAWAY names a last id).
                let warmUp = try await exchange(daemon, json: self.json("plain")).response
                #expect(self.complete(warmUp))
                let response = try await exchange(daemon, json: self.json("goaway-refuse-once:\(UUID().uuidString)")).response
                #expect(self.complete(response), "\(response?.body ?? "")")
                #expect(mock.stats.http2ConnectionsAccepted == 2)
            }
        }
    }

    @Test func aGoAwayMidStreamLetsItFinishAndNewStreamsGoToANewConnection() async throws {
        try await self.withMock { mock, settings in
            try await withDaemon(self.configure(settings)) { daemon, _ in
                let (client, server) = try FakeApache.tcpConnection()
                defer { client.closeIfOpen() }
                try FakeApache.handOff(to: daemon.socketPath, json: self.json("goaway:2"), server: server)
                // The GOAWAY went out after chunk 2: once chunk 3 is here, the daemon has it.
                _ = try await FakeApache.read(until: "Mock token 3 ", from: client.rawValue)
                let later = try await exchange(daemon, json: self.json("plain")).response
                let (rest, _) = try await FakeApache.response(from: client.rawValue, timeoutMilliseconds: 5000)
                #expect(self.complete(later), "\(later?.events?.last?.data ?? later?.body ?? "nil")")
                #expect(String(decoding: rest, as: UTF8.self).hasSuffix("data: [DONE]\n\n"))
                #expect(mock.stats.http2ConnectionsAccepted == 2)
            }
        }
    }

    /// Two clients stop reading: their upstream streams pause (their windows fill), and a third
    /// stream on the same connection still gets its data.
    @Test func pausedStreamsDoNotStarveTheirSiblings() async throws {
        try await self.withMock(chunks: 40, delay: .milliseconds(2)) { _, settings in
            try await withDaemon(self.configure(settings)) { daemon, _ in
                var stalled: [OwnedDescriptor] = []
                defer { stalled.forEach { $0.closeIfOpen() } }
                for _ in 0..<2 {
                    let (client, server) = try FakeApache.tcpConnection()
                    var size: CInt = 4096
                    setsockopt(server.rawValue, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
                    setsockopt(client.rawValue, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
                    try FakeApache.handOff(to: daemon.socketPath, json: self.json("long"), server: server)
                    stalled.append(client)
                }
                try await Task.sleep(for: .milliseconds(300))  // both are paused by now
                let reader = try await exchange(daemon, json: self.json("long")).response
                #expect(self.complete(reader))
                #expect((reader?.events?.count ?? 0) == 41)
                // The two stalled streams are still held, paused, while the third finished (it
                // ends once the daemon sees the reader's close, a moment after the reader's end).
                #expect(await eventually { daemon.activeStreams == 2 })
            }
        }
    }

    /// Error answers end their streams early (the stream is cancelled), but they are the
    /// upstream's doing, not resets of streams it was serving: the connection stays.
    @Test func errorStatusesDoNotSpendTheResetBudget() async throws {
        try await self.withMock(chunks: 2, adjust: { $0.resetBudget = 3 }) { mock, settings in
            try await withDaemon(self.configure(settings)) { daemon, _ in
                for _ in 0..<5 {
                    let status = try await exchange(daemon, json: self.json("status:500")).response?.status
                    #expect(status == 502)
                }
                let after = try await exchange(daemon, json: self.json("plain")).response
                #expect(self.complete(after))
                #expect(mock.stats.http2ConnectionsAccepted == 1)
            }
        }
    }
}

/// A client that stops reading pauses its upstream stream (no window is given back, so the
/// server stops at the window's end); once it reads again, every event arrives, in order.
@Suite struct HTTP2UpstreamBackpressureTests {
    /// Through the mock, which waits for window when a stream's runs out (it tracks the
    /// client's windows), so this is the whole path: client stalls, daemon pauses, mock waits.
    @Test
    func aStalledClientGetsEveryEventInOrderOnceItReads() async throws {
        let chunks = 3000
        try await withMockLLM(.h2c, chunks: chunks, delay: .microseconds(300)) { _, settings in
            try await withDaemon({ $0.openAI = OpenAIBackend(upstream: settings) }) { daemon, _ in
                let (client, server) = try FakeApache.tcpConnection()
                defer { client.closeIfOpen() }
                // Small kernel buffers, so the daemon's queue for this client fills and it pauses.
                var small: CInt = 4096
                setsockopt(client.rawValue, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<CInt>.size))
                setsockopt(server.rawValue, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<CInt>.size))
                try FakeApache.handOff(to: daemon.socketPath, json: #"{"backend":"openai","prompt":"x"}"#, server: server)
                // Started (a loaded suite may take a while), then given longer than the whole
                // stream takes unpaused (3 000 × 300 µs): it must still be held, paused.
                #expect(await eventually(within: 10_000) { daemon.activeStreams == 1 })
                try await Task.sleep(for: .milliseconds(1500))
                #expect(daemon.activeStreams == 1)
                let fd = client.rawValue
                let (bytes, closed) = try await offThePool { FakeApache.readUntilClosed(fd, timeoutMilliseconds: 20_000) }
                #expect(closed)
                let response = try #require(ReceivedResponse(bytes))
                let contents = Array((response.events ?? []).dropLast().map(\.data))
                #expect(contents.count == chunks)
                let expected = (1...chunks).map { #"{"content":"Mock token \#($0) "}"# }
                #expect(contents == expected, "first difference at \(contents.indices.first { contents[$0] != expected[$0] } ?? -1)")
                #expect(response.events?.last?.data == "[DONE]")
            }
        }
    }
}

/// An h2c "upstream" on a Unix socket that answers the client's preface with its SETTINGS,
/// then sends PINGs without end and reads nothing more.
// @unchecked Sendable: after init, only the one thread running `flood` touches the listener.
private final class PingFlooder: @unchecked Sendable {
    private let listener: UnixTestListener
    var path: String { self.listener.path }

    init(path: String) throws {
        self.listener = try UnixTestListener(path: path)
    }

    /// Floods the first connection until the client cuts it off (`cutOff`) or `limit` passes.
    func flood(for limit: Duration) -> (cutOff: Bool, pings: Int) {
        guard let connection = self.listener.acceptFirst() else { return (false, 0) }
        defer { connection.closeIfOpen() }
        let fd = connection.rawValue
        // The client's preface and SETTINGS; what they say does not matter here.
        var scratch = [UInt8](repeating: 0, count: 4096)
        _ = try? Syscall.waitReadable(fd, timeoutMilliseconds: 5000)
        _ = scratch.withUnsafeMutableBytes { try? Syscall.read(fd, into: $0) }
        var hello = ByteBuffer()
        hello.writeHTTP2Settings([])
        hello.writeHTTP2Settings([], ack: true)
        // Paced, so that no single read holds anywhere near a thousand PINGs: what gets the
        // connection cut off must be the answers piling up, not one burst.
        var batch = ByteBuffer()
        for ping in 0..<8 { batch.writeHTTP2Ping(UInt64(ping), ack: false) }
        let deadline = ContinuousClock.now + limit
        guard UnixTestListener.send(hello, on: fd, until: deadline) else { return (true, 0) }
        var pings = 0
        while ContinuousClock.now < deadline {
            guard UnixTestListener.send(batch, on: fd, until: deadline) else { return (true, pings) }
            pings += 8
            usleep(1000)
        }
        return (false, pings)
    }
}

/// An h2c "upstream" on a Unix socket that reads the client's preface, gives it a large window,
/// then reads nothing for a while; then it reads every request and, once all are whole, answers
/// each with `[DONE]`.
// @unchecked Sendable: after init, only the one thread running `serve` touches the sockets
// (`close` comes after it returned).
private final class PausingReader: @unchecked Sendable {
    private let listener: UnixTestListener
    private var connection: OwnedDescriptor?
    var path: String { self.listener.path }

    init(path: String) throws {
        self.listener = try UnixTestListener(path: path)
    }

    func close() {
        self.connection?.closeIfOpen()
    }

    /// How many whole requests arrived within `limit` (the pause included), all answered.
    func serve(expecting expected: Int, pause: Duration, within limit: Duration) -> Int {
        let deadline = ContinuousClock.now + limit
        guard let connection = self.listener.acceptFirst() else { return 0 }
        self.connection = connection
        let fd = connection.rawValue
        var reader = HTTP2FrameReader(maxFrameSize: 1 << 24)
        var preface = ByteBuffer()
        while preface.readableBytes < 24, ContinuousClock.now < deadline {
            guard let bytes = Self.read(fd) else { return 0 }
            preface.writeImmutableBuffer(bytes)
        }
        guard preface.readableBytes >= 24 else { return 0 }
        preface.moveReaderIndex(forwardBy: 24)
        reader.append(preface)
        var hello = ByteBuffer()
        hello.writeHTTP2Settings([(HTTP2SettingID.initialWindowSize, 1 << 30)])
        hello.writeHTTP2Settings([], ack: true)
        hello.writeHTTP2WindowUpdate(streamID: 0, increment: 1 << 30)
        guard UnixTestListener.send(hello, on: fd, until: deadline) else { return 0 }
        Thread.sleep(forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18)
        var whole = Set<UInt32>()
        while whole.count < expected, ContinuousClock.now < deadline {
            guard let bytes = Self.read(fd) else { break }
            reader.append(bytes)
            while let frame = try? reader.next() {
                let requestPart = frame.type == HTTP2FrameType.data || frame.type == HTTP2FrameType.headers
                if requestPart, frame.streamID != 0, frame.flags & HTTP2Flags.endStream != 0 { whole.insert(frame.streamID) }
            }
        }
        var answers = ByteBuffer()
        for id in whole.sorted() {
            var block = ByteBuffer(bytes: [0x88, 0x0F, 0x10, 17])  // :status 200, content-type (static index 31)
            block.writeString("text/event-stream")
            answers.writeHTTP2Headers(streamID: id, block: block, endStream: false, maxFrameSize: 16_384)
            answers.writeHTTP2Data(streamID: id, ByteBuffer(string: "data: [DONE]\n\n"), endStream: true)
        }
        _ = UnixTestListener.send(answers, on: fd, until: ContinuousClock.now + .seconds(5))
        return whole.count
    }

    /// What the next read brings within 100 ms (empty if nothing); nil at the end of the stream.
    private static func read(_ fd: CInt) -> ByteBuffer? {
        guard (try? Syscall.waitReadable(fd, timeoutMilliseconds: 100)) == true else { return ByteBuffer() }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(65_536)
        // -1: nothing after all; nil: an error; 0: the end.
        let count: Int? = buffer.withUnsafeMutableWritableBytes { raw in
            do { return try Syscall.read(fd, into: raw) ?? -1 } catch { return nil }
        }
        guard let count, count != 0 else { return nil }
        guard count > 0 else { return ByteBuffer() }
        buffer.moveWriterIndex(forwardBy: count)
        return buffer
    }
}

/// The listening side of a test "upstream" on a Unix stream socket (the kernel holds about
/// 200 KiB for a peer that does not read, where loopback TCP would hold megabytes).
private final class UnixTestListener: @unchecked Sendable {
    private let listener: OwnedDescriptor
    let path: String

    init(path: String) throws {
        self.listener = OwnedDescriptor(taking: try Syscall.socket(domain: AF_UNIX, type: CInt(SOCK_STREAM.rawValue)))
        try Syscall.bind(self.listener.rawValue, to: UnixSocketAddress(path: path))
        try Syscall.listen(self.listener.rawValue, backlog: 4)
        self.path = path
    }

    deinit {
        self.listener.closeIfOpen()
    }

    /// The first connection, within 5 s.
    func acceptFirst() -> OwnedDescriptor? {
        guard (try? Syscall.waitReadable(self.listener.rawValue, timeoutMilliseconds: 5000)) == true,
            let accepted = try? Syscall.accept(self.listener.rawValue)
        else { return nil }
        return OwnedDescriptor(taking: accepted)
    }

    /// Sends all of `bytes` (or as much as fits by `deadline`); false once the peer is gone.
    static func send(_ bytes: ByteBuffer, on fd: CInt, until deadline: ContinuousClock.Instant) -> Bool {
        var rest = bytes
        while rest.readableBytes > 0 {
            let sent = rest.withUnsafeReadableBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent > 0 {
                rest.moveReaderIndex(forwardBy: sent)
            } else if sent < 0, errno == EAGAIN || errno == EINTR {
                guard ContinuousClock.now < deadline else { return true }
                var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&entry, 1, 50)
            } else {
                return false
            }
        }
        return true
    }
}
