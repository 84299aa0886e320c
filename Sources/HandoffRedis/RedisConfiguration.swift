/// Where and how to reach one Redis server, from a `redis://` or `rediss://` URL.
///
///     redis://[[user]:password@]host[:port][/db][?protocol=3&timeout_ms=2000&tls_verify=false]
///
/// `rediss://` speaks TLS (verified unless `tls_verify=false`). The password and user are
/// percent-decoded; `AUTH` (and `SELECT db` when db ≠ 0) run on every new connection.
public struct RedisConfiguration: Sendable, Equatable {
    public var host: String
    /// Default 6379.
    public var port: Int
    public var username: String?
    public var password: String?
    /// Database index (`SELECT`); default 0.
    public var database: Int
    public var tls: Bool
    /// Verify the server's certificate (TLS only); default true.
    public var tlsVerify: Bool
    /// 2 (default) or 3 (`HELLO 3`).
    public var protocolVersion: Int
    /// Each command's deadline; past it the connection is closed and every command on it
    /// fails (a late reply could not be told apart). Default 2 s.
    public var commandTimeout: Duration
    /// Connect deadline; default 2 s.
    public var connectTimeout: Duration

    public init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        tls: Bool = false,
        tlsVerify: Bool = true,
        protocolVersion: Int = 2,
        commandTimeout: Duration = .seconds(2),
        connectTimeout: Duration = .seconds(2)
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
        self.tlsVerify = tlsVerify
        self.protocolVersion = protocolVersion
        self.commandTimeout = commandTimeout
        self.connectTimeout = connectTimeout
    }

    /// Parses `url`; the error names what is wrong (never the password).
    public init(url: String) throws(RedisConfigurationError) {
        self.init()
        let rest: Substring
        if url.hasPrefix("redis://") {
            rest = url.dropFirst("redis://".count)
        } else if url.hasPrefix("rediss://") {
            rest = url.dropFirst("rediss://".count)
            self.tls = true
        } else {
            throw RedisConfigurationError("the URL must start with redis:// or rediss://")
        }
        var authority = rest
        var path: Substring = ""
        var query: Substring = ""
        if let question = authority.firstIndex(of: "?") {
            query = authority[authority.index(after: question)...]
            authority = authority[..<question]
        }
        if let slash = authority.firstIndex(of: "/") {
            path = authority[authority.index(after: slash)...]
            authority = authority[..<slash]
        }
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                let user = try Self.percentDecoded(userInfo[..<colon], part: "user")
                self.username = user.isEmpty ? nil : user
                self.password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...], part: "password")
            } else if !userInfo.isEmpty {
                // `redis://secret@host` is the common shorthand for a password alone.
                self.password = try Self.percentDecoded(userInfo, part: "password")
            }
        }
        var host = authority
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw RedisConfigurationError("an IPv6 host needs its closing ]") }
            let after = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let port = Int(after.dropFirst()), (1...65535).contains(port) else {
                    throw RedisConfigurationError("the port must be 1–65535")
                }
                self.port = port
            }
        } else if let colon = host.lastIndex(of: ":") {
            guard let port = Int(host[host.index(after: colon)...]), (1...65535).contains(port) else {
                throw RedisConfigurationError("the port must be 1–65535")
            }
            self.port = port
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw RedisConfigurationError("the URL names no host") }
        self.host = String(host)
        if !path.isEmpty {
            guard let database = Int(path), database >= 0 else { throw RedisConfigurationError("the path must be a database number, not '\(path)'") }
            self.database = database
        }
        for item in query.split(separator: "&") where !item.isEmpty {
            let pair = item.split(separator: "=", maxSplits: 1)
            let name = pair[0]
            let value = pair.count > 1 ? pair[1] : ""
            switch name {
            case "protocol":
                guard value == "2" || value == "3" else { throw RedisConfigurationError("protocol must be 2 or 3") }
                self.protocolVersion = Int(value)!
            case "timeout_ms":
                guard let ms = Int(value), ms > 0 else { throw RedisConfigurationError("timeout_ms must be a positive number of milliseconds") }
                self.commandTimeout = .milliseconds(ms)
            case "connect_timeout_ms":
                guard let ms = Int(value), ms > 0 else { throw RedisConfigurationError("connect_timeout_ms must be a positive number of milliseconds") }
                self.connectTimeout = .milliseconds(ms)
            case "tls_verify":
                guard value == "true" || value == "false" else { throw RedisConfigurationError("tls_verify must be true or false") }
                self.tlsVerify = value == "true"
            default:
                throw RedisConfigurationError("unknown URL option '\(name)' (known: protocol, timeout_ms, connect_timeout_ms, tls_verify)")
            }
        }
    }

    /// The URL without its password, for logs.
    public var redacted: String {
        var text = self.tls ? "rediss://" : "redis://"
        if self.username != nil || self.password != nil { text += "\(self.username ?? ""):***@" }
        text += self.host.contains(":") ? "[\(self.host)]" : self.host
        text += ":\(self.port)/\(self.database)"
        return text
    }

    private static func percentDecoded(_ text: Substring, part: String) throws(RedisConfigurationError) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else {
                throw RedisConfigurationError("the \(part) has a malformed %-escape")
            }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// A Redis URL that cannot be used.
public struct RedisConfigurationError: Error, Sendable, CustomStringConvertible {
    public var description: String

    init(_ description: String) {
        self.description = description
    }
}
