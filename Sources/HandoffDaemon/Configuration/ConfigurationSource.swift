import Foundation
import HandoffRedis
import HandoffRequest

/// Builds a ``DaemonConfiguration`` from raw settings with the precedence
/// flags > environment > defaults, parsing every value strictly and naming the key of the
/// first bad one.
///
/// The executable collects the flags it was given as `[key: value]` (key = the flag's long
/// name without dashes); each key also has an environment variable, listed in ``keys``.
public enum ConfigurationSource {
    /// One setting: its flag name, its environment variable and its help text.
    public struct Key: Sendable {
        public var name: String
        public var environment: String
        public var help: String
        /// Conventional variables also honoured, after ``environment`` (e.g. `OPENAI_API_KEY`).
        public var aliases: [String] = []
    }

    /// Every setting handoffd understands.
    public static let keys: [Key] = [
        Key(name: "config", environment: "HANDOFFD_CONFIG", help: "YAML file with any of these keys (and LangGraph profiles); flags and environment win over it."),
        Key(name: "socket", environment: "HANDOFFD_SOCKET", help: "Path of the SOCK_SEQPACKET socket handoffs arrive on (required)."),
        Key(name: "socket-mode", environment: "HANDOFFD_SOCKET_MODE", help: "Octal permission bits of the socket. Default 0660."),
        Key(name: "socket-group", environment: "HANDOFFD_SOCKET_GROUP", help: "Group (name or id) of the socket, e.g. www-data. Default: the daemon's."),
        Key(name: "allow-uid", environment: "HANDOFFD_ALLOW_UID", help: "Comma-separated users (names or uids) allowed to hand off, checked with SO_PEERCRED. Default: anyone who can open the socket."),
        Key(name: "backend", environment: "HANDOFFD_BACKEND", help: "Default backend for handoffs that name none: mock. Default mock."),
        Key(name: "mock-messages", environment: "HANDOFFD_MOCK_MESSAGES", help: "Content events per mock stream. Default 18."),
        Key(name: "mock-interval-ms", environment: "HANDOFFD_MOCK_INTERVAL_MS", help: "Milliseconds between mock events (0 allowed). Default 50."),
        Key(name: "mock-text", environment: "HANDOFFD_MOCK_TEXT", help: "What the mock says: numbered (\"Mock message N of M …\", for tests) or words (prose, one word per event). Default numbered."),
        Key(name: "max-connections", environment: "HANDOFFD_MAX_CONNECTIONS", help: "Concurrent streams before 503 + Retry-After (0 refuses all). Default: what the open-file limit allows."),
        Key(name: "max-handoff-bytes", environment: "HANDOFFD_MAX_HANDOFF_BYTES", help: "Largest handoff payload in bytes; larger gets 413. Default 131072."),
        Key(name: "handoff-timeout-ms", environment: "HANDOFFD_HANDOFF_TIMEOUT_MS", help: "Milliseconds a connected peer has to send its handoff. Default 5000."),
        Key(name: "write-timeout-s", environment: "HANDOFFD_WRITE_TIMEOUT_S", help: "Seconds a write to the client may make no progress. Default 30."),
        Key(name: "drain-timeout-s", environment: "HANDOFFD_DRAIN_TIMEOUT_S", help: "Seconds running streams may continue after SIGTERM (0 ends them at once). Default 120."),
        Key(name: "linger-ms", environment: "HANDOFFD_LINGER_MS", help: "Milliseconds to wait for the client to close after the response (0 closes at once). Default 2000."),
        Key(name: "backlog", environment: "HANDOFFD_BACKLOG", help: "listen(2) backlog of the handoff socket. Default 4096."),
        Key(name: "openai-base-url", environment: "HANDOFFD_OPENAI_BASE_URL", help: "Base URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1; enables the openai backend.", aliases: ["OPENAI_BASE_URL"]),
        Key(name: "openai-api-key", environment: "HANDOFFD_OPENAI_API_KEY", help: "API key sent as Authorization: Bearer (prefer the environment or --openai-api-key-file).", aliases: ["OPENAI_API_KEY"]),
        Key(name: "openai-api-key-file", environment: "HANDOFFD_OPENAI_API_KEY_FILE", help: "File holding the API key (trailing whitespace ignored)."),
        Key(name: "openai-model", environment: "HANDOFFD_OPENAI_MODEL", help: "Model for handoffs that name none. Default gpt-4o-mini."),
        Key(name: "upstream-http", environment: "HANDOFFD_UPSTREAM_HTTP", help: "h2 or http1.1. Default: h2 for https (ALPN), http1.1 for http; h2 over http is prior knowledge (h2c)."),
        Key(name: "upstream-unix-socket", environment: "HANDOFFD_UPSTREAM_UNIX_SOCKET", help: "Connect to the upstream through this Unix socket (the URL still gives Host and path)."),
        Key(name: "upstream-insecure", environment: "HANDOFFD_UPSTREAM_INSECURE", help: "Do not verify the upstream's TLS certificate (testing only). Default false."),
        Key(name: "upstream-ca-file", environment: "HANDOFFD_UPSTREAM_CA_FILE", help: "PEM file of extra certificates to trust for the upstream."),
        Key(name: "upstream-max-connections", environment: "HANDOFFD_UPSTREAM_MAX_CONNECTIONS", help: "Most HTTP/2 connections to the upstream. Default 64."),
        Key(name: "upstream-connect-timeout-ms", environment: "HANDOFFD_UPSTREAM_CONNECT_TIMEOUT_MS", help: "Connecting to the upstream: TCP, TLS and, on HTTP/2, the server's SETTINGS. Default 5000."),
        Key(name: "upstream-first-byte-timeout-ms", environment: "HANDOFFD_UPSTREAM_FIRST_BYTE_TIMEOUT_MS", help: "From request to response head; then 504. Default 60000."),
        Key(name: "upstream-idle-timeout-s", environment: "HANDOFFD_UPSTREAM_IDLE_TIMEOUT_S", help: "Longest upstream silence mid-stream. Default 120."),
        Key(name: "max-stream-duration-s", environment: "HANDOFFD_MAX_STREAM_DURATION_S", help: "Longest stream. Default 1800."),
        Key(name: "keepalive-interval-s", environment: "HANDOFFD_KEEPALIVE_INTERVAL_S", help: "A ': ping' comment after this much silence (0: never). Default 15."),
        Key(name: "data-dir", environment: "HANDOFFD_DATA_DIR", help: "Directory attachments must live in (each is read once, then deleted). Default: none, attachments refused."),
        Key(name: "max-attachment-bytes", environment: "HANDOFFD_MAX_ATTACHMENT_BYTES", help: "Largest image or attachment, in bytes. Default 20971520."),
        Key(name: "max-upstream-event-bytes", environment: "HANDOFFD_MAX_UPSTREAM_EVENT_BYTES", help: "Largest upstream SSE line or event a stream buffers, in bytes; larger fails the stream. Default 262144."),
        Key(name: "access-log", environment: "HANDOFFD_ACCESS_LOG", help: "on or off: one line per stream on stderr. Default on."),
        Key(name: "metrics-address", environment: "HANDOFFD_METRICS_ADDRESS", help: "host:port for /metrics and /healthz, or 'off'. Default 127.0.0.1:9464."),
        Key(name: "redis-url", environment: "HANDOFFD_REDIS_URL", help: "redis://[user:password@]host[:port][/db] (or rediss:// for TLS): enables resumable streams and the channel backend. Default: none."),
        Key(name: "resume-ttl-s", environment: "HANDOFFD_RESUME_TTL_S", help: "Seconds a finished stream stays resumable in Redis. Default 600."),
        Key(name: "redis-key-prefix", environment: "HANDOFFD_REDIS_KEY_PREFIX", help: "Start of every Redis key and channel the daemon uses. Default handoff:."),
        Key(name: "completion-url", environment: "HANDOFFD_COMPLETION_URL", help: "http(s) URL each finished stream is POSTed to as signed JSON (text, usage, status); a handoff opts out with \"completion\": false. Default: none."),
        Key(name: "completion-secret-file", environment: "HANDOFFD_COMPLETION_SECRET_FILE", help: "File holding the HMAC-SHA256 key for X-Handoff-Signature (required with --completion-url)."),
        Key(name: "completion-timeout-ms", environment: "HANDOFFD_COMPLETION_TIMEOUT_MS", help: "One delivery attempt's deadline. Default 10000."),
        Key(name: "completion-max-age-s", environment: "HANDOFFD_COMPLETION_MAX_AGE_S", help: "Seconds an undelivered callback is retried (with backoff; kept in Redis when configured). Default 86400."),
        Key(name: "event-loops", environment: "HANDOFFD_EVENT_LOOPS", help: "Event loop threads per process. Default: one per core."),
        Key(name: "loop-batch-us", environment: "HANDOFFD_LOOP_BATCH_US", help: "Under load, an event loop wakes at most once per this many microseconds and handles what arrived meanwhile together: less CPU per event, at most this much added latency, none when idle. A new stream waits at most half of it. 0 turns it off; at most 10000. Default 5000."),
        Key(name: "workers", environment: "HANDOFFD_WORKERS", help: "Processes sharing the socket (each with its own open-file limit). Default 1."),
        Key(name: "log-level", environment: "HANDOFFD_LOG_LEVEL", help: "trace, debug, info, notice, warning, error or critical. Default info."),
    ]

    /// A YAML file with every key, commented out, each with its help: what `make install`
    /// puts in `/etc/handoffd/handoffd.yaml` (`handoffd --example-config`).
    public static func exampleFile(socket: String = "/run/handoffd/handoffd.sock") -> String {
        var text = """
            # /etc/handoffd/handoffd.yaml: handoffd's configuration (handoffd --config FILE).
            # Every key is a flag's long name; flags, then environment variables, win over this file.
            # Check a change with: handoffd --config /etc/handoffd/handoffd.yaml --check-config

            socket: \(socket)


            """
        for key in self.keys where key.name != "config" && key.name != "socket" {
            text += "# \(key.help)\n#   (flag --\(key.name), environment \(key.environment))\n#\(key.name):\n\n"
        }
        text += """
            # LangGraph deployments are named profiles; a handoff picks one with "profile".
            #langgraph:
            #  default-profile: support
            #  profiles:
            #    support:
            #      url: https://support.example.langgraph.app
            #      api-key-env: LANGGRAPH_API_KEY
            #      assistant: agent
            #      stream-mode: [values, messages]

            """
        return text
    }

    /// The environment variable of `name`.
    public static func environmentVariable(for name: String) -> String {
        self.keys.first { $0.name == name }?.environment ?? "HANDOFFD_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// Resolves every key from `flags`, then `environment`, then the file named by `config`
    /// (flag or `HANDOFFD_CONFIG`), then defaults, and validates.
    public static func resolve(flags: [String: String], environment: [String: String]) throws(ConfigurationError) -> DaemonConfiguration {
        let file = try (flags["config"] ?? environment["HANDOFFD_CONFIG"]).map { path throws(ConfigurationError) in try ConfigurationFile.load(path) }
        let values = Values(flags: flags, environment: environment, file: file?.values ?? [:], filePath: file?.path)
        guard let socket = values.string("socket") else {
            throw ConfigurationError(key: "socket", message: "is required (--socket PATH or HANDOFFD_SOCKET)")
        }
        var configuration = DaemonConfiguration(listener: .init(socketPath: socket))
        if let mode = try values.octal("socket-mode") { configuration.listener.socketMode = mode }
        if let group = values.string("socket-group") {
            configuration.listener.socketGroup = try Self.groupID(group, key: values.sourceName("socket-group"))
        }
        if let users = values.string("allow-uid") {
            configuration.listener.allowedPeerUIDs = try Self.userIDs(users, key: values.sourceName("allow-uid"))
        }
        if let backlog = try values.integer("backlog", in: 1...65535) { configuration.listener.backlog = Int32(backlog) }
        if let backend = values.string("backend") {
            guard let kind = BackendKind(rawValue: backend) else {
                throw ConfigurationError(
                    key: values.sourceName("backend"),
                    message: "unknown backend '\(backend)'; choose one of: \(BackendKind.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            configuration.defaultBackend = kind
        }
        if let messages = try values.integer("mock-messages", in: 0...1_000_000) { configuration.mock.messages = messages }
        if let text = values.string("mock-text") {
            guard let parsed = DaemonConfiguration.Mock.Text(rawValue: text) else {
                throw ConfigurationError(key: values.sourceName("mock-text"), message: "must be numbered or words, got '\(text)'")
            }
            configuration.mock.text = parsed
        }
        if let interval = try values.integer("mock-interval-ms", in: 0...3_600_000) { configuration.mock.interval = .milliseconds(interval) }
        if let max = try values.integer("max-connections", in: 0...10_000_000) { configuration.limits.maxConnections = max }
        if let bytes = try values.integer("max-handoff-bytes", in: 1...16 * 1024 * 1024) { configuration.limits.maxHandoffBytes = bytes }
        if let ms = try values.integer("handoff-timeout-ms", in: 1...3_600_000) { configuration.timeouts.handoff = .milliseconds(ms) }
        if let seconds = try values.integer("write-timeout-s", in: 1...86_400) { configuration.timeouts.write = .seconds(seconds) }
        if let seconds = try values.integer("drain-timeout-s", in: 0...86_400) { configuration.timeouts.drain = .seconds(seconds) }
        if let ms = try values.integer("linger-ms", in: 0...600_000) { configuration.timeouts.linger = .milliseconds(ms) }
        if let ms = try values.integer("upstream-first-byte-timeout-ms", in: 1...3_600_000) { configuration.timeouts.upstreamFirstByte = .milliseconds(ms) }
        if let seconds = try values.integer("upstream-idle-timeout-s", in: 1...86_400) { configuration.timeouts.upstreamIdle = .seconds(seconds) }
        if let seconds = try values.integer("max-stream-duration-s", in: 1...604_800) { configuration.timeouts.maxStreamDuration = .seconds(seconds) }
        if let seconds = try values.integer("keepalive-interval-s", in: 0...3600) { configuration.timeouts.keepAliveInterval = .seconds(seconds) }
        configuration.accessLog = try values.bool("access-log") ?? true
        if let directory = values.string("data-dir") {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ConfigurationError(key: values.sourceName("data-dir"), message: "'\(directory)' is not a directory")
            }
            configuration.attachments.dataDirectory = directory
        }
        if let bytes = try values.integer("max-attachment-bytes", in: 1...1 << 30) { configuration.attachments.maxBytes = bytes }
        if let bytes = try values.integer("max-upstream-event-bytes", in: 1024...1 << 26) { configuration.limits.maxUpstreamEventBytes = bytes }
        if let loops = try values.integer("event-loops", in: 1...256) { configuration.eventLoops = loops }
        if let window = try values.integer("loop-batch-us", in: 0...10_000) { configuration.loopBatchWindow = .microseconds(window) }
        if let workers = try values.integer("workers", in: 1...64) { configuration.workers = workers }
        if let level = values.string("log-level") {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(level) else {
                throw ConfigurationError(key: values.sourceName("log-level"), message: "unknown level '\(level)'; use \(levels.joined(separator: ", "))")
            }
            configuration.logLevel = level
        }
        if let url = values.string("openai-base-url") {
            configuration.openAI = try Self.openAI(url: url, values: values)
        } else if values.string("openai-api-key") != nil, values.flags["openai-api-key"] != nil {
            throw ConfigurationError(key: "--openai-api-key", message: "needs --openai-base-url (or OPENAI_BASE_URL)")
        }
        if let url = values.string("redis-url") {
            let connection: RedisConfiguration
            do {
                connection = try RedisConfiguration(url: url)
            } catch {
                throw ConfigurationError(key: values.sourceName("redis-url"), message: error.description)
            }
            var redis = DaemonConfiguration.Redis(connection: connection)
            if let seconds = try values.integer("resume-ttl-s", in: 1...30 * 86_400) { redis.resumeTTL = .seconds(seconds) }
            if let prefix = values.string("redis-key-prefix") {
                guard prefix.utf8.count <= 64, prefix.utf8.allSatisfy(HandoffRequest.isStreamIDByte) else {
                    throw ConfigurationError(key: values.sourceName("redis-key-prefix"), message: "must be up to 64 characters from A-Z a-z 0-9 _ . : -")
                }
                redis.keyPrefix = prefix
            }
            configuration.redis = redis
        }
        if let url = values.string("completion-url") {
            configuration.completion = try Self.completion(url: url, values: values)
        } else if values.string("completion-secret-file") != nil {
            throw ConfigurationError(key: values.sourceName("completion-secret-file"), message: "needs --completion-url")
        }
        if let file { configuration.langGraph = try Self.langGraph(from: file, environment: environment) }
        configuration.metricsAddress = try Self.address(values.string("metrics-address") ?? "127.0.0.1:9464", key: values.sourceName("metrics-address"))
        try configuration.validate()
        return configuration
    }

    static func openAI(url: String, values: Values) throws(ConfigurationError) -> OpenAIBackend {
        let upstream = try Self.upstream(url: url, key: values.sourceName("openai-base-url"), values: values)
        var apiKey = values.string("openai-api-key")
        if let file = values.string("openai-api-key-file") {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ConfigurationError(key: values.sourceName("openai-api-key-file"), message: "cannot read '\(file)'")
            }
            apiKey = contents.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return OpenAIBackend(upstream: upstream, apiKey: apiKey, defaultModel: values.string("openai-model") ?? "gpt-4o-mini")
    }

    static func completion(url: String, values: Values) throws(ConfigurationError) -> DaemonConfiguration.Completion {
        let parsed: UpstreamEndpoint
        do {
            parsed = try UpstreamEndpoint(url: url)
        } catch {
            throw ConfigurationError(key: values.sourceName("completion-url"), message: error.description)
        }
        guard let file = values.string("completion-secret-file") else {
            throw ConfigurationError(key: "--completion-secret-file", message: "is required with --completion-url: the receiver must be able to check that a callback came from this daemon")
        }
        guard let contents = FileManager.default.contents(atPath: file) else {
            throw ConfigurationError(key: values.sourceName("completion-secret-file"), message: "cannot read '\(file)'")
        }
        let secret = Array(String(decoding: contents, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        guard secret.count >= 16 else {
            throw ConfigurationError(key: values.sourceName("completion-secret-file"), message: "holds \(secret.count) bytes; use a secret of at least 16 (e.g. openssl rand -hex 32)")
        }
        var completion = DaemonConfiguration.Completion(url: parsed, secret: secret)
        if let ms = try values.integer("completion-timeout-ms", in: 100...600_000) { completion.attemptTimeout = .milliseconds(ms) }
        if let seconds = try values.integer("completion-max-age-s", in: 1...30 * 86_400) { completion.maxAge = .seconds(seconds) }
        completion.verifyCertificates = !(try values.bool("upstream-insecure") ?? false)
        return completion
    }

    /// The connection settings shared by every upstream, from the `upstream-*` keys.
    static func upstream(url: String, key: String, values: Values) throws(ConfigurationError) -> UpstreamSettings {
        let endpoint: UpstreamEndpoint
        do {
            endpoint = try UpstreamEndpoint(url: url, unixSocketPath: values.string("upstream-unix-socket"))
        } catch {
            throw ConfigurationError(key: key, message: error.description)
        }
        var version: UpstreamSettings.HTTPVersion?
        if let raw = values.string("upstream-http") {
            guard let parsed = UpstreamSettings.HTTPVersion(rawValue: raw) else {
                throw ConfigurationError(key: values.sourceName("upstream-http"), message: "must be h2 or http1.1, got '\(raw)'")
            }
            version = parsed
        }
        var settings = UpstreamSettings(endpoint: endpoint, httpVersion: version)
        settings.verifyCertificates = !(try values.bool("upstream-insecure") ?? false)
        if let file = values.string("upstream-ca-file") {
            guard FileManager.default.isReadableFile(atPath: file) else {
                throw ConfigurationError(key: values.sourceName("upstream-ca-file"), message: "cannot read '\(file)'")
            }
            settings.trustedCertificatesFile = file
        }
        if let max = try values.integer("upstream-max-connections", in: 1...10_000) { settings.maxConnections = max }
        if let ms = try values.integer("upstream-connect-timeout-ms", in: 1...600_000) { settings.connectTimeout = .milliseconds(ms) }
        return settings
    }

    /// `host:port` or `[v6]:port`; `off` (or empty) means none.
    static func address(_ raw: String, key: String) throws(ConfigurationError) -> DaemonConfiguration.HostAndPort? {
        if raw.isEmpty || raw == "off" { return nil }
        guard let colon = raw.lastIndex(of: ":") else {
            throw ConfigurationError(key: key, message: "must be host:port (e.g. 127.0.0.1:9464) or off, got '\(raw)'")
        }
        var host = String(raw[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = Int(raw[raw.index(after: colon)...]), (1...65535).contains(port) else {
            throw ConfigurationError(key: key, message: "must be host:port with a port from 1 to 65535, got '\(raw)'")
        }
        return .init(host: host, port: port)
    }

    /// The raw strings, looked up by precedence, remembering where each came from.
    struct Values {
        let flags: [String: String]
        let environment: [String: String]
        var file: [String: String] = [:]
        var filePath: String?

        func string(_ name: String) -> String? {
            if let flag = self.flags[name] { return flag }
            return self.environmentEntry(name)?.value ?? self.file[name]
        }

        private func environmentEntry(_ name: String) -> (variable: String, value: String)? {
            let key = ConfigurationSource.keys.first { $0.name == name }
            for variable in [ConfigurationSource.environmentVariable(for: name)] + (key?.aliases ?? []) {
                if let value = self.environment[variable], !value.isEmpty { return (variable, value) }
            }
            return nil
        }

        /// `--name` or the environment variable, whichever supplied the value.
        func sourceName(_ name: String) -> String {
            if self.flags[name] != nil { return "--\(name)" }
            if let variable = self.environmentEntry(name)?.variable { return variable }
            if self.file[name] != nil, let path = self.filePath { return "\(path): \(name)" }
            return ConfigurationSource.environmentVariable(for: name)
        }

        func bool(_ name: String) throws(ConfigurationError) -> Bool? {
            guard let raw = self.string(name) else { return nil }
            switch raw.lowercased() {
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw ConfigurationError(key: self.sourceName(name), message: "must be on or off, got '\(raw)'")
            }
        }

        func integer(_ name: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
            guard let raw = self.string(name) else { return nil }
            guard let value = Int(raw.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
                throw ConfigurationError(key: self.sourceName(name), message: "must be an integer from \(range.lowerBound) to \(range.upperBound), got '\(raw)'")
            }
            return value
        }

        func octal(_ name: String) throws(ConfigurationError) -> UInt32? {
            guard let raw = self.string(name) else { return nil }
            let digits = raw.hasPrefix("0o") ? String(raw.dropFirst(2)) : raw
            guard let value = UInt32(digits, radix: 8), value <= 0o777 else {
                throw ConfigurationError(key: self.sourceName(name), message: "must be octal permission bits like 0660, got '\(raw)'")
            }
            return value
        }
    }

    static func groupID(_ group: String, key: String) throws(ConfigurationError) -> UInt32 {
        if let id = UInt32(group) { return id }
        guard let entry = getgrnam(group) else {
            throw ConfigurationError(key: key, message: "no group named '\(group)'")
        }
        return entry.pointee.gr_gid
    }

    static func userIDs(_ list: String, key: String) throws(ConfigurationError) -> Set<UInt32> {
        var ids: Set<UInt32> = []
        for item in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            if let id = UInt32(item) {
                ids.insert(id)
            } else if let entry = getpwnam(item) {
                ids.insert(entry.pointee.pw_uid)
            } else {
                throw ConfigurationError(key: key, message: "no user named '\(item)'")
            }
        }
        guard !ids.isEmpty else { throw ConfigurationError(key: key, message: "lists no users") }
        return ids
    }
}
