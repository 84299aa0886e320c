import Foundation
@testable import HandoffDaemon
import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import Logging
import HandoffMockLLM
import MetricsTestKit
import NIOCore
import NIOPosix

/// A daemon running in-process on a temporary socket, shut down gracefully after `body`; on
/// `eventLoopGroup` (which the caller shuts down) when given, batched by `batcher` if that is.
func withDaemon(
    eventLoopGroup: MultiThreadedEventLoopGroup? = nil,
    batcher: LoopBatcher? = nil,
    _ adjust: (inout DaemonConfiguration) -> Void = { _ in },
    _ body: (HandoffDaemon, TestMetrics) async throws -> Void
) async throws {
    try await withTemporaryUnixSocketPath { path in
        var configuration = DaemonConfiguration(listener: .init(socketPath: path), mock: .init(messages: 3, interval: .milliseconds(10)))
        configuration.timeouts.linger = .milliseconds(300)
        adjust(&configuration)
        let metrics = TestMetrics()
        var logger = Logger(label: "handoffd-test")
        logger.logLevel = .warning
        let daemon = try HandoffDaemon(
            configuration: configuration, logger: logger, metricsFactory: metrics,
            eventLoops: eventLoopGroup.map { ($0, batcher) }, renderMetrics: { [] }, signals: false
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await daemon.run() }
            do {
                try await body(daemon, metrics)
            } catch {
                await daemon.triggerGracefulShutdown()
                throw error
            }
            await daemon.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }
}

/// Hands off `payload` with a fresh loopback TCP client and returns what the client receives.
func exchange(_ daemon: HandoffDaemon, payload: [UInt8], timeoutMilliseconds: Int = 5000) async throws -> (response: ReceivedResponse?, closed: Bool, raw: [UInt8]) {
    let (client, server) = try FakeApache.tcpConnection()
    defer { client.closeIfOpen() }
    try FakeApache.handOff(to: daemon.socketPath, payload: payload, descriptors: [server.rawValue])
    server.closeIfOpen()
    let (bytes, closed) = try await FakeApache.response(from: client.rawValue, timeoutMilliseconds: timeoutMilliseconds)
    return (ReceivedResponse(bytes), closed, bytes)
}

func exchange(_ daemon: HandoffDaemon, json: String) async throws -> (response: ReceivedResponse?, closed: Bool, raw: [UInt8]) {
    try await exchange(daemon, payload: Array(json.utf8))
}

/// Waits until `condition` holds or `milliseconds` pass; returns whether it held.
func eventually(within milliseconds: Int = 3000, _ condition: () -> Bool) async -> Bool {
    let deadline = FakeApache.monotonicMilliseconds() + milliseconds
    while FakeApache.monotonicMilliseconds() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// Runs a blocking call on a thread of its own, so waiting (for an ack, say) never holds one of
/// the few cooperative threads the daemon under test needs to start.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// How the daemon reaches the mock LLM in a test.
enum MockUpstream {
    case tls, h2c, http1
}

/// A mock LLM in-process (`chunks` chunks `delay` apart) and upstream settings that reach it,
/// closed after `body`.
func withMockLLM<R>(
    _ upstream: MockUpstream,
    chunks: Int = 4,
    delay: TimeAmount = .milliseconds(5),
    maxConcurrentStreams: Int = 100,
    applicationProtocols: [String] = ["h2", "http/1.1"],
    _ body: (MockLLMServer, UpstreamSettings) async throws -> R
) async throws -> R {
    try await withTemporaryDirectory { directory in
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = MockLLMConfiguration(chunkCount: chunks, chunkDelay: delay, maxConcurrentStreams: maxConcurrentStreams)
        configuration.applicationProtocols = applicationProtocols
        if upstream == .tls { configuration.tls = .selfSigned(certificateOutput: directory + "/mock.pem") }
        var logger = Logger(label: "mock")
        logger.logLevel = .warning
        let mock = try await MockLLMServer(configuration: configuration, group: group, logger: logger)
        let scheme = upstream == .tls ? "https" : "http"
        let endpoint = try UpstreamEndpoint(url: "\(scheme)://127.0.0.1:\(mock.port!)/v1")
        var settings = UpstreamSettings(endpoint: endpoint, httpVersion: upstream == .http1 ? .http1 : .http2)
        if upstream == .tls { settings.trustedCertificatesFile = directory + "/mock.pem" }
        do {
            let result = try await body(mock, settings)
            await mock.close()
            try await group.shutdownGracefully()
            return result
        } catch {
            await mock.close()
            try? await group.shutdownGracefully()
            throw error
        }
    }
}
