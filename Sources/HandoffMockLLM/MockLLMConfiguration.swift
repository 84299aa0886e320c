public import NIOCore

/// How the mock upstream listens and streams.
public struct MockLLMConfiguration: Sendable {
    /// TCP address, e.g. `127.0.0.1`, and port (0 picks a free one). `nil` port: no TCP.
    public var host: String
    public var port: Int?
    /// A Unix socket path to serve plain HTTP (HTTP/1.1 or h2c) on, as well or instead.
    public var unixSocketPath: String?
    /// TLS on the TCP listener (ALPN `h2` and `http/1.1`).
    public var tls: TLS?
    /// Content chunks per stream. Default 18.
    public var chunkCount: Int
    /// Delay before each chunk after the first. Default 50 ms.
    public var chunkDelay: TimeAmount
    /// When set, `/v1/…` and LangGraph routes require `Authorization: Bearer <apiKey>`.
    public var apiKey: String?
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` announced to clients. Default 100.
    public var maxConcurrentStreams: Int
    /// What TLS offers in ALPN, in order of preference. Default `h2`, then `http/1.1`.
    public var applicationProtocols = ["h2", "http/1.1"]

    /// Where the certificate comes from.
    public enum TLS: Sendable {
        /// A self-signed certificate for `localhost` and `127.0.0.1`, made at start; its PEM is
        /// written to `certificateOutput` when given, so clients can trust it.
        case selfSigned(certificateOutput: String?)
        /// PEM files.
        case files(certificate: String, key: String)
    }

    public init(
        host: String = "127.0.0.1",
        port: Int? = 0,
        unixSocketPath: String? = nil,
        tls: TLS? = nil,
        chunkCount: Int = 18,
        chunkDelay: TimeAmount = .milliseconds(50),
        apiKey: String? = nil,
        maxConcurrentStreams: Int = 100
    ) {
        self.host = host
        self.port = port
        self.unixSocketPath = unixSocketPath
        self.tls = tls
        self.chunkCount = chunkCount
        self.chunkDelay = chunkDelay
        self.apiKey = apiKey
        self.maxConcurrentStreams = maxConcurrentStreams
    }
}
