import Foundation
public import NIOCore
public import NIOHTTP1
import NIOPosix
import NIOSSL

/// Reads and resets the mock upstream's `/stats` (and `/health`) over HTTP/1.1 or HTTPS, so a
/// scenario can prove what happened upstream (a cancelled stream, a request never made).
public final class UpstreamStatsClient: Sendable {
    private let host: String
    private let port: Int
    private let tls: NIOSSLContext?
    private let group: any EventLoopGroup

    /// - Parameters:
    ///   - origin: `http(s)://host:port` of the mock.
    ///   - trustedCertificatesFile: PEM to verify the mock with; without it, loopback TLS is not verified.
    public init(origin: String, trustedCertificatesFile: String?, group: any EventLoopGroup) throws {
        guard let components = URLComponents(string: origin), let host = components.host, let scheme = components.scheme else {
            throw ConformanceFailure("--upstream must be an origin like https://127.0.0.1:8443, got '\(origin)'")
        }
        self.host = host
        self.port = components.port ?? (scheme == "https" ? 443 : 80)
        self.group = group
        if scheme == "https" {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let file = trustedCertificatesFile {
                configuration.additionalTrustRoots = [.file(file)]
            } else {
                configuration.certificateVerification = .none
            }
            configuration.applicationProtocols = ["http/1.1"]
            self.tls = try NIOSSLContext(configuration: configuration)
        } else {
            self.tls = nil
        }
    }

    /// `GET path` (or POST); returns the status and body.
    public func request(_ path: String, method: HTTPMethod = .GET) async throws -> (status: Int, body: [UInt8]) {
        let promise = self.group.next().makePromise(of: (Int, [UInt8]).self)
        let tls = self.tls
        let host = self.host
        let channel = try await ClientBootstrap(group: self.group)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: nil))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(Collector(promise: promise))
                }
            }
            .connect(host: self.host, port: self.port).get()
        var headers = HTTPHeaders()
        headers.add(name: "host", value: host)
        headers.add(name: "connection", value: "close")
        headers.add(name: "content-length", value: "0")
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let result = try await promise.futureResult.get()
        try? await channel.close()
        return result
    }

    /// The mock's counters as a JSON object.
    public func stats() async throws -> [String: Any] {
        let (status, body) = try await self.request("/stats")
        guard status == 200, let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw ConformanceFailure("GET /stats answered \(status)")
        }
        return object
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        private let promise: EventLoopPromise<(Int, [UInt8])>
        private var status = 0
        private var body: [UInt8] = []

        init(promise: EventLoopPromise<(Int, [UInt8])>) {
            self.promise = promise
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head): self.status = Int(head.status.code)
            case .body(let buffer): self.body += buffer.readableBytesView
            case .end: self.promise.succeed((self.status, self.body))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.promise.fail(ConformanceFailure("the upstream closed before answering"))
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            self.promise.fail(error)
            context.close(promise: nil)
        }
    }
}
