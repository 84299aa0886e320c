/// Where an upstream lives, parsed once from its base URL.
///
///     https://api.openai.com/v1       TLS, ALPN h2 (or HTTP/1.1 when asked)
///     http://127.0.0.1:8089/v1        plain HTTP/1.1, or h2c with prior knowledge when asked
///
/// A Unix socket path, when given, replaces the TCP connection; the URL still supplies the
/// `Host` header and the path prefix.
public struct UpstreamEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// `true` for `https`.
    public var tls: Bool
    /// Host name or address (no brackets), also used for SNI and `:authority`.
    public var host: String
    /// TCP port.
    public var port: Int
    /// Path prefix without a trailing slash, e.g. `/v1` (may be empty).
    public var pathPrefix: String
    /// Connect to this Unix socket instead of `host:port`.
    public var unixSocketPath: String?

    public init(tls: Bool, host: String, port: Int, pathPrefix: String, unixSocketPath: String? = nil) {
        self.tls = tls
        self.host = host
        self.port = port
        self.pathPrefix = pathPrefix
        self.unixSocketPath = unixSocketPath
    }

    /// Parses `http(s)://host[:port][/prefix]`. Query strings, fragments and user info are refused.
    public init(url: String, unixSocketPath: String? = nil) throws(UpstreamEndpointError) {
        let tls: Bool
        let rest: Substring
        if url.hasPrefix("https://") {
            tls = true
            rest = url.dropFirst("https://".count)
        } else if url.hasPrefix("http://") {
            tls = false
            rest = url.dropFirst("http://".count)
        } else {
            throw UpstreamEndpointError(url: url, reason: "must start with http:// or https://")
        }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var prefix = String(rest[authorityEnd...])
        guard !authority.isEmpty, !authority.contains("@") else {
            throw UpstreamEndpointError(url: url, reason: "needs a host and no user info")
        }
        guard !prefix.contains("?"), !prefix.contains("#") else {
            throw UpstreamEndpointError(url: url, reason: "must not have a query or fragment")
        }
        while prefix.hasSuffix("/") { prefix.removeLast() }
        var host = String(authority)
        var port = tls ? 443 : 80
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw UpstreamEndpointError(url: url, reason: "has an unclosed [") }
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") {
                guard let parsed = Int(after.dropFirst()), (1...65535).contains(parsed) else {
                    throw UpstreamEndpointError(url: url, reason: "has an invalid port")
                }
                port = parsed
            }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":") {
            guard let parsed = Int(host[host.index(after: colon)...]), (1...65535).contains(parsed) else {
                throw UpstreamEndpointError(url: url, reason: "has an invalid port")
            }
            port = parsed
            host = String(host[..<colon])
        }
        guard !host.isEmpty else { throw UpstreamEndpointError(url: url, reason: "needs a host") }
        self.init(tls: tls, host: host, port: port, pathPrefix: prefix, unixSocketPath: unixSocketPath)
    }

    /// The `:authority` / `Host` value.
    public var authority: String {
        let defaultPort = self.tls ? 443 : 80
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return self.port == defaultPort ? host : "\(host):\(self.port)"
    }

    /// Whether `host` is an IP address literal (no SNI is sent for those).
    public var hostIsIPAddress: Bool {
        self.host.contains(":") || self.host.split(separator: ".").count == 4 && self.host.allSatisfy { $0.isNumber || $0 == "." }
    }

    public var description: String {
        let base = "\(self.tls ? "https" : "http")://\(self.authority)\(self.pathPrefix)"
        return self.unixSocketPath.map { "\(base) via unix:\($0)" } ?? base
    }
}

/// An upstream URL that cannot be used.
public struct UpstreamEndpointError: Error, Sendable, CustomStringConvertible {
    public var url: String
    public var reason: String
    public var description: String { "'\(self.url)' \(self.reason)" }
}
