import Foundation
import HandoffDaemon
import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import Logging
import MetricsTestKit
import NIOPosix
import Testing

/// Graceful shutdown: stop taking handoffs, let streams finish up to the drain timeout, end the
/// rest with an error event; the socket path goes away with the daemon.
@Suite struct DaemonLifecycleTests {
    private func start(_ adjust: (inout DaemonConfiguration) -> Void, in directory: String, group: MultiThreadedEventLoopGroup? = nil) throws -> HandoffDaemon {
        var configuration = DaemonConfiguration(listener: .init(socketPath: directory + "/d.sock"))
        configuration.timeouts.linger = .milliseconds(200)
        adjust(&configuration)
        return try HandoffDaemon(configuration: configuration, logger: Logger(label: "test"), metricsFactory: TestMetrics(), eventLoopGroup: group)
    }

    /// A handoff the acceptor took just before shutdown began, whose stream has not started on
    /// its loop yet, is drained like a running stream. Shutdown used to look only at running
    /// streams, return at once, and let the process end that stream after its first event (a
    /// reload under load lost one that way). The loop is held busy here until shutdown has
    /// looked, so the window is wide open.
    @Test func aHandoffTakenJustBeforeShutdownIsServedWhole() async throws {
        try await withTemporaryDirectory { directory in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let daemon = try self.start({ $0.mock = .init(messages: 5, interval: .milliseconds(20)) }, in: directory, group: group)
            let run = Task { try await daemon.run() }
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            let busy = DispatchSemaphore(value: 0)
            group.next().execute { busy.wait() }  // the stream cannot start until this returns
            try FakeApache.handOff(to: daemon.socketPath, json: "{}", server: server)
            #expect(await eventually { daemon.heldClientDescriptors == 1 })
            #expect(daemon.activeStreams == 0)
            await daemon.triggerGracefulShutdown()
            #expect(await eventually { !daemon.isAccepting })
            try await Task.sleep(for: .milliseconds(200))  // shutdown looks at what is held
            busy.signal()
            try await run.value
            // The daemon has returned from run(): as in the executable, its loops end now.
            try await group.shutdownGracefully()
            let (bytes, closed) = try await FakeApache.response(from: client.rawValue, timeoutMilliseconds: 2000)
            #expect(closed)
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.contains("Mock message 5 of 5"), "\(text)")
            #expect(text.hasSuffix("data: [DONE]\n\n"))
        }
    }

    @Test func streamsFinishWithinTheDrainTimeout() async throws {
        try await withTemporaryDirectory { directory in
            let daemon = try self.start({ $0.mock = .init(messages: 5, interval: .milliseconds(100)) }, in: directory)
            let run = Task { try await daemon.run() }
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            try FakeApache.handOff(to: daemon.socketPath, json: "{}", server: server)
            _ = try await FakeApache.read(until: "Mock message 1 ", from: client.rawValue)
            await daemon.triggerGracefulShutdown()
            let (bytes, closed) = try await FakeApache.response(from: client.rawValue)
            #expect(closed)
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.contains("Mock message 5 of 5"))
            #expect(text.hasSuffix("data: [DONE]\n\n"))
            try await run.value
            #expect(!FileManager.default.fileExists(atPath: daemon.socketPath))
        }
    }

    @Test func drainDeadlineEndsStreamsWithAnErrorEvent() async throws {
        try await withTemporaryDirectory { directory in
            let daemon = try self.start({
                $0.mock = .init(messages: 1000, interval: .milliseconds(50))
                $0.timeouts.drain = .milliseconds(200)
            }, in: directory)
            let run = Task { try await daemon.run() }
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            try FakeApache.handOff(to: daemon.socketPath, json: "{}", server: server)
            _ = try await FakeApache.read(until: "Mock message 1 ", from: client.rawValue)
            let started = FakeApache.monotonicMilliseconds()
            await daemon.triggerGracefulShutdown()
            let (bytes, closed) = try await FakeApache.response(from: client.rawValue)
            let elapsed = FakeApache.monotonicMilliseconds() - started
            #expect(closed)
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasSuffix("event: error\ndata: {\"error\":\"the server is shutting down\",\"reason\":\"shutdown\"}\n\n"))
            #expect(!text.contains("[DONE]"))
            #expect(elapsed >= 150 && elapsed < 3000, "ended after \(elapsed) ms")
            try await run.value
        }
    }

    @Test func newHandoffsAreRefusedAfterShutdownBegins() async throws {
        try await withTemporaryDirectory { directory in
            let daemon = try self.start({ _ in }, in: directory)
            let run = Task { try await daemon.run() }
            #expect(try await exchange(daemon, json: "{}").response?.status == 200)
            await daemon.triggerGracefulShutdown()
            try await run.value
            #expect(throws: HandoffWireError.self) { _ = try HandoffSender.connect(to: daemon.socketPath) }
        }
    }

    @Test func refusesToStartOverALiveInstance() async throws {
        try await withTemporaryDirectory { directory in
            let first = try self.start({ _ in }, in: directory)
            #expect(throws: HandoffWireError.self) { _ = try self.start({ _ in }, in: directory) }
            let run = Task { try await first.run() }
            #expect(try await exchange(first, json: "{}").response?.status == 200)
            await first.triggerGracefulShutdown()
            try await run.value
        }
    }
}
