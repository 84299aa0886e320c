import ArgumentParser
import Foundation
import HandoffMockLLM
import Logging
import NIOCore
import NIOPosix
import UnixSignals

/// The mock upstream for tests, demos and benchmarks.
@main
struct MockLLMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff-mock-llm",
        abstract: "An OpenAI- and LangGraph-compatible streaming mock over HTTP/1.1, h2c and h2 (TLS).",
        discussion: """
            Routes: POST /v1/chat/completions (stream: true for SSE), GET /v1/models, GET /health,
            GET /stats, POST /stats/reset, POST /threads, POST /runs/stream,
            POST /threads/{id}/runs/stream.
            X-Test-Pattern (comma-separated): unicode, short, long, crlf, multiline, comments,
            finish:REASON, abort:N, status:CODE, stall:MS, hang:N, reset:N, malformed.
            """
    )

    @Option(help: "TCP address to listen on, HOST:PORT (port 0 picks one). Default 127.0.0.1:8089.")
    var listen = "127.0.0.1:8089"
    @Flag(help: "Serve TLS on the TCP listener (ALPN h2 and http/1.1).") var tls = false
    @Option(name: .customLong("tls-cert"), help: "PEM certificate (with --tls-key); default: self-signed, made at start.") var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert.") var tlsKey: String?
    @Option(name: .customLong("tls-cert-out"), help: "Write the self-signed certificate's PEM here, for clients to trust.") var tlsCertOut: String?
    @Option(help: "Also serve plain HTTP (HTTP/1.1 or h2c) on this Unix socket path.") var unix: String?
    @Option(name: .customLong("chunk-count"), help: "Content chunks per stream.") var chunkCount = 18
    @Option(name: .customLong("chunk-delay-ms"), help: "Milliseconds before each chunk after the first.") var chunkDelayMs = 50
    @Option(name: .customLong("api-key"), help: "Require Authorization: Bearer KEY.") var apiKey: String?
    @Option(name: .customLong("max-concurrent-streams"), help: "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS.") var maxConcurrentStreams = 100
    @Option(name: .customLong("port-file"), help: "Write the bound TCP port here once listening.") var portFile: String?
    @Flag(help: "Log only warnings and errors.") var quiet = false

    func validate() throws {
        guard (self.tlsCert == nil) == (self.tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        guard self.chunkCount >= 1 else { throw ValidationError("--chunk-count must be at least 1") }
        guard self.chunkDelayMs >= 0 else { throw ValidationError("--chunk-delay-ms must be 0 or more") }
        guard (1...100_000).contains(self.maxConcurrentStreams) else { throw ValidationError("--max-concurrent-streams must be 1–100000") }
        _ = try self.hostAndPort()
    }

    func hostAndPort() throws -> (String, Int) {
        guard let colon = self.listen.lastIndex(of: ":"), let port = Int(self.listen[self.listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT, got '\(self.listen)'")
        }
        return (String(self.listen[..<colon]), port)
    }

    func run() async throws {
        let quiet = self.quiet
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = quiet ? .warning : .info
            return handler
        }
        let logger = Logger(label: "handoff-mock-llm")
        let (host, port) = try self.hostAndPort()
        var configuration = MockLLMConfiguration(
            host: host,
            port: port,
            unixSocketPath: self.unix,
            chunkCount: self.chunkCount,
            chunkDelay: .milliseconds(Int64(self.chunkDelayMs)),
            apiKey: self.apiKey,
            maxConcurrentStreams: self.maxConcurrentStreams
        )
        if let cert = self.tlsCert, let key = self.tlsKey {
            configuration.tls = .files(certificate: cert, key: key)
        } else if self.tls {
            configuration.tls = .selfSigned(certificateOutput: self.tlsCertOut)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let server = try await MockLLMServer(configuration: configuration, group: group, logger: logger)
        if let portFile = self.portFile, let bound = server.port {
            try "\(bound)\n".write(toFile: portFile, atomically: true, encoding: .utf8)
        }
        for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) { break }
        await server.close()
        try await group.shutdownGracefully()
    }
}
