import Foundation
import HandoffDaemon
import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import Logging
import MetricsTestKit
import Testing

/// Graceful shutdown: stop taking handoffs, let streams finish up to the drain timeout, end the
/// rest with an error event; the socket path goes away with the daemon.
@Suite struct DaemonLifecycleTests {
    private func start(_ adjust: (inout DaemonConfiguration) -> Void, in directory: String) throws -> HandoffDaemon {
        var configuration = DaemonConfiguration(listener: .init(socketPath: directory + "/d.sock"))
        configuration.timeouts.linger = .milliseconds(200)
        adjust(&configuration)
        return try HandoffDaemon(configuration: configuration, logger: Logger(label: "test"), metricsFactory: TestMetrics())
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
