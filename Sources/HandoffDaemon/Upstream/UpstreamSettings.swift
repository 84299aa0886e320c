import NIOCore
import NIOPosix
import NIOSSL

/// How the daemon talks to one upstream (an OpenAI-compatible API or a LangGraph server).
public struct UpstreamSettings: Sendable {
    /// Where the upstream is.
    public var endpoint: UpstreamEndpoint
    /// Which HTTP version to speak.
    public var httpVersion: HTTPVersion
    /// Verify the server's certificate (on unless explicitly disabled). Default `true`.
    public var verifyCertificates: Bool
    /// Extra PEM file of trusted certificates (e.g. a private CA or a self-signed mock).
    public var trustedCertificatesFile: String?
    /// Upper bound on open connections (HTTP/2) across all event loops. Default 64.
    public var maxConnections: Int
    /// HTTP/2 receive window per stream, in bytes: how much one slow client can make us
    /// buffer before the upstream is paused. Default 65 535.
    public var streamWindowBytes: Int
    /// Cancels per connection per 30 s before new streams avoid that connection, so a burst of
    /// client disconnects never exceeds a server's reset cap (often 200 per 30 s). Default 100.
    public var resetBudget: Int
    /// Establishing a connection (TCP, TLS, HTTP/2 settings). Default 5 s.
    public var connectTimeout: Duration
    /// Interval of HTTP/2 PINGs on a connection with streams; twice that without an answer
    /// closes it. Default 30 s.
    public var pingInterval: Duration

    /// The protocol choice.
    public enum HTTPVersion: String, Sendable, Hashable, CaseIterable {
        /// HTTP/2: ALPN `h2` over TLS, prior knowledge (h2c) over plain TCP or a Unix socket.
        case http2 = "h2"
        /// HTTP/1.1, one connection per stream.
        case http1 = "http1.1"
    }

    public init(
        endpoint: UpstreamEndpoint,
        httpVersion: HTTPVersion? = nil,
        verifyCertificates: Bool = true,
        trustedCertificatesFile: String? = nil,
        maxConnections: Int = 64,
        streamWindowBytes: Int = 65_535,
        resetBudget: Int = 100,
        connectTimeout: Duration = .seconds(5),
        pingInterval: Duration = .seconds(30)
    ) {
        self.endpoint = endpoint
        // HTTPS negotiates h2; plain http:// servers (vLLM, Ollama, …) mostly speak HTTP/1.1.
        self.httpVersion = httpVersion ?? (endpoint.tls ? .http2 : .http1)
        self.verifyCertificates = verifyCertificates
        self.trustedCertificatesFile = trustedCertificatesFile
        self.maxConnections = maxConnections
        self.streamWindowBytes = streamWindowBytes
        self.resetBudget = resetBudget
        self.connectTimeout = connectTimeout
        self.pingInterval = pingInterval
    }

    /// The TLS context for this upstream, or `nil` for plain connections.
    func makeTLSContext() throws -> NIOSSLContext? {
        guard self.endpoint.tls else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.applicationProtocols = self.httpVersion == .http2 ? ["h2"] : ["http/1.1"]
        if !self.verifyCertificates { configuration.certificateVerification = .none }
        if let file = self.trustedCertificatesFile {
            configuration.additionalTrustRoots = [.file(file)]
        }
        return try NIOSSLContext(configuration: configuration)
    }
}

extension UpstreamSettings {
    /// Adds the TLS client handler (SNI unless the host is an address) when this upstream uses TLS.
    func addTLSHandler(_ tls: NIOSSLContext?, to pipeline: ChannelPipeline.SynchronousOperations) throws {
        guard let tls else { return }
        let hostname = self.endpoint.hostIsIPAddress ? nil : self.endpoint.host
        try pipeline.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: hostname))
    }

    /// Connects `bootstrap` to the endpoint: its Unix socket when configured, else host and port.
    func connect(_ bootstrap: ClientBootstrap) -> EventLoopFuture<any Channel> {
        if let path = self.endpoint.unixSocketPath {
            return bootstrap.connect(unixDomainSocketPath: path)
        }
        return bootstrap.connect(host: self.endpoint.host, port: self.endpoint.port)
    }
}
