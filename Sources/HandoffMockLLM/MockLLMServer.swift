import Foundation
public import Logging
public import NIOCore
import NIOHTTP1
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL

/// The mock upstream: OpenAI- and LangGraph-compatible streaming over HTTP/1.1, h2c (prior
/// knowledge) and h2 over TLS (ALPN), on TCP and/or a Unix socket.
public final class MockLLMServer: Sendable {
    /// Request and stream counters, also served at `/stats`.
    public let stats = MockStats()
    /// The bound TCP port, when listening on TCP.
    public let port: Int?
    /// Whether the TCP listener speaks TLS.
    public let usesTLS: Bool

    private let channels: [any Channel]
    private let group: any EventLoopGroup

    /// Binds every configured listener. Returns once they accept connections.
    public init(configuration: MockLLMConfiguration, group: any EventLoopGroup, logger: Logger) async throws {
        self.group = group
        var sslContext: NIOSSLContext?
        if let tls = configuration.tls {
            sslContext = try Self.makeSSLContext(tls, applicationProtocols: configuration.applicationProtocols)
        }
        self.usesTLS = sslContext != nil
        let stats = self.stats
        var channels: [any Channel] = []
        var port: Int?
        if let requested = configuration.port {
            let channel = try await Self.bootstrap(group: group, configuration: configuration, stats: stats, sslContext: sslContext)
                .bind(host: configuration.host, port: requested).get()
            port = channel.localAddress?.port
            channels.append(channel)
        }
        if let path = configuration.unixSocketPath {
            try? FileManager.default.removeItem(atPath: path)
            let channel = try await Self.bootstrap(group: group, configuration: configuration, stats: stats, sslContext: nil)
                .bind(unixDomainSocketPath: path).get()
            channels.append(channel)
        }
        self.port = port
        self.channels = channels
        logger.info(
            "mock LLM listening",
            metadata: [
                "tcp": "\(port.map { "\(configuration.host):\($0)" } ?? "none")",
                "tls": "\(sslContext != nil)",
                "unix": "\(configuration.unixSocketPath ?? "none")",
            ]
        )
    }

    /// Stops listening. Streams in progress end when the group shuts down.
    public func close() async {
        for channel in self.channels { try? await channel.close() }
    }

    private static func bootstrap(
        group: any EventLoopGroup,
        configuration: MockLLMConfiguration,
        stats: MockStats,
        sslContext: NIOSSLContext?
    ) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 4096)
            .childChannelInitializer { channel in
                if let sslContext {
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }.flatMap {
                        channel.configureHTTP2SecureUpgrade(
                            h2ChannelConfigurator: { channel in
                                stats.connectionOpened(http2: true)
                                return configureHTTP2(channel, configuration: configuration, stats: stats)
                            },
                            http1ChannelConfigurator: { channel in
                                stats.connectionOpened(http2: false)
                                return configureHTTP1(channel, configuration: configuration, stats: stats)
                            }
                        )
                    }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPVersionDetector { channel, isHTTP2 in
                            stats.connectionOpened(http2: isHTTP2)
                            return isHTTP2
                                ? configureHTTP2(channel, configuration: configuration, stats: stats)
                                : configureHTTP1(channel, configuration: configuration, stats: stats)
                        }
                    )
                }
            }
    }

    private static func configureHTTP1(_ channel: any Channel, configuration: MockLLMConfiguration, stats: MockStats) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(MockLLMHandler(configuration: configuration, stats: stats))
        }
    }

    private static func configureHTTP2(_ channel: any Channel, configuration: MockLLMConfiguration, stats: MockStats) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            var connection = NIOHTTP2Handler.ConnectionConfiguration()
            connection.initialSettings = [
                HTTP2Setting(parameter: .maxConcurrentStreams, value: configuration.maxConcurrentStreams),
                HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize),
            ]
            // The `overlong` pattern sends past its declared content-length on purpose.
            connection.contentLengthValidation = .disabled
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(NIOHTTP2Handler(mode: .server, connectionConfiguration: connection, streamConfiguration: .init()))
            try sync.addHandler(MockHTTP2Handler(configuration: configuration, stats: stats))
        }
    }

    private static func makeSSLContext(_ tls: MockLLMConfiguration.TLS, applicationProtocols: [String]) throws -> NIOSSLContext {
        let certificate: NIOSSLCertificate
        let key: NIOSSLPrivateKey
        switch tls {
        case .files(let certificatePath, let keyPath):
            guard let first = try NIOSSLCertificate.fromPEMFile(certificatePath).first else {
                throw NIOSSLError.failedToLoadCertificate
            }
            certificate = first
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        case .selfSigned(let output):
            let (certificatePEM, keyPEM) = try SelfSignedCertificate.make()
            certificate = try NIOSSLCertificate(bytes: Array(certificatePEM.utf8), format: .pem)
            key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
            if let output {
                try certificatePEM.write(toFile: output, atomically: true, encoding: .utf8)
            }
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key))
        configuration.applicationProtocols = applicationProtocols
        return try NIOSSLContext(configuration: configuration)
    }
}
