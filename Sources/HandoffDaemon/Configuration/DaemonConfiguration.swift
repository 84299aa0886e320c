public import HandoffRequest
public import HandoffRedis

/// Everything handoffd needs to run, validated once (see `DaemonConfiguration+Validation`).
///
/// Built by the executable from flags, environment and defaults; built directly by tests.
public struct DaemonConfiguration: Sendable {
    /// Where and how handoffs are received.
    public var listener: Listener
    /// Capacity and size limits.
    public var limits: Limits
    /// Every timeout the daemon enforces.
    public var timeouts: Timeouts
    /// Which backend serves a handoff that names none.
    public var defaultBackend: BackendKind
    /// The built-in mock backend.
    public var mock: Mock
    /// The `openai` backend, when configured.
    public var openAI: OpenAIBackend?
    /// The `langgraph` backend's named profiles, when configured.
    public var langGraph: LangGraphBackend?
    /// Event loop threads; one per core when `nil`. Default `nil`.
    public var eventLoops: Int?
    /// Under load, each event loop waits at least this long between wake-ups and handles what
    /// arrived meanwhile in one pass: less CPU per relayed event, at most this much added
    /// latency, none when idle (``LoopBatching``). Zero turns it off; at most 10 ms. Applies to
    /// the loops the daemon makes, not to a group passed in. Default 5 ms.
    public var loopBatchWindow: Duration = .milliseconds(5)
    /// Images and attachments a handoff may bring. Default: inline images only, no data directory.
    public var attachments = AttachmentLimits()
    /// Write one access-log line per stream (request id, user, backend, status, TTFB, duration,
    /// bytes, events, finish reason, tokens). Default `false`; the executable turns it on.
    public var accessLog: Bool = false
    /// Where `/metrics` and `/healthz` are served; `nil` serves none. Default `nil` (the
    /// executable's default is 127.0.0.1:9464).
    public var metricsAddress: HostAndPort?
    /// Redis, for resumable streams and pub/sub channels; `nil` (the default) turns them off,
    /// and handoffs that ask for them get `501`.
    public var redis: Redis?
    /// Where finished streams are posted (`--completion-url`); `nil` (the default) posts none.
    public var completion: Completion?
    /// Processes sharing the socket (`--workers`, 1–64). Default 1.
    public var workers = 1
    /// `trace` … `critical` (`--log-level`). Default `info`.
    public var logLevel = "info"

    public init(
        listener: Listener,
        limits: Limits = .init(),
        timeouts: Timeouts = .init(),
        defaultBackend: BackendKind = .mock,
        mock: Mock = .init(),
        metricsAddress: HostAndPort? = nil
    ) {
        self.listener = listener
        self.limits = limits
        self.timeouts = timeouts
        self.defaultBackend = defaultBackend
        self.mock = mock
        self.metricsAddress = metricsAddress
    }

    /// A TCP address to listen on.
    public struct HostAndPort: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
    }

    /// The handoff socket.
    public struct Listener: Sendable {
        /// Absolute path of the `SOCK_SEQPACKET` socket. Used for binding, or only for logging
        /// when ``inheritedDescriptor`` is set.
        public var socketPath: String
        /// Permission bits of the socket file. Default `0o660`.
        public var socketMode: UInt32
        /// Group id given to the socket file, or `nil` to keep the daemon's. Default `nil`.
        public var socketGroup: UInt32?
        /// `listen(2)` backlog. Default 4096 (the kernel caps it at `net.core.somaxconn`).
        public var backlog: Int32
        /// Peer uids allowed to hand off (checked with `SO_PEERCRED`); empty allows everyone
        /// who can open the socket. Default empty.
        public var allowedPeerUIDs: Set<UInt32>
        /// A listening socket inherited through socket activation (`LISTEN_FDS`), used instead of
        /// binding ``socketPath``. Default `nil`.
        public var inheritedDescriptor: Int32?
        /// At shutdown, take the handoffs already queued on an inherited socket before stopping
        /// (workers of one supervisor, which unlinked the path). With systemd socket activation
        /// they stay queued for the next instance instead. Default `false`.
        public var drainsInheritedBacklog = false
        /// The inherited socket's path is this process's to unlink when it stops: it took the
        /// socket over from a predecessor that had bound the path (a reload). Default `false`.
        public var ownsInheritedPath = false

        public init(
            socketPath: String,
            socketMode: UInt32 = 0o660,
            socketGroup: UInt32? = nil,
            backlog: Int32 = 4096,
            allowedPeerUIDs: Set<UInt32> = [],
            inheritedDescriptor: Int32? = nil
        ) {
            self.socketPath = socketPath
            self.socketMode = socketMode
            self.socketGroup = socketGroup
            self.backlog = backlog
            self.allowedPeerUIDs = allowedPeerUIDs
            self.inheritedDescriptor = inheritedDescriptor
        }
    }

    /// Capacity and size limits.
    public struct Limits: Sendable {
        /// Concurrent streams; a handoff beyond it is answered `503` with `Retry-After`.
        /// `nil` means "as many as the open-file limit allows". Default `nil`.
        public var maxConnections: Int?
        /// Largest handoff payload in bytes; larger ones are answered `413`. Default 131072.
        public var maxHandoffBytes: Int
        /// Descriptors kept free for everything that is not a client connection (log files,
        /// upstream connections, the metrics server). Default 64.
        public var reservedDescriptors: Int
        /// Seconds a `503` tells the client to wait (`Retry-After`). Default 1.
        public var retryAfterSeconds: Int
        /// Largest upstream SSE line, and largest event's data, in bytes: what one stream may
        /// buffer while an event arrives. A larger one fails the stream (`upstream_malformed`).
        /// Default 262144 (an LLM chunk is a few hundred bytes; LangGraph `values` events carry
        /// the graph state and can be larger).
        public var maxUpstreamEventBytes: Int

        public init(
            maxConnections: Int? = nil,
            maxHandoffBytes: Int = 131_072,
            reservedDescriptors: Int = 64,
            retryAfterSeconds: Int = 1,
            maxUpstreamEventBytes: Int = 262_144
        ) {
            self.maxConnections = maxConnections
            self.maxHandoffBytes = maxHandoffBytes
            self.reservedDescriptors = reservedDescriptors
            self.retryAfterSeconds = retryAfterSeconds
            self.maxUpstreamEventBytes = maxUpstreamEventBytes
        }
    }

    /// Timeouts, all enforced.
    public struct Timeouts: Sendable {
        /// From accepting a Unix connection to having its handoff record. Default 5 s.
        public var handoff: Duration
        /// A write to the client must make progress within this time, re-armed on every write.
        /// Default 30 s.
        public var write: Duration
        /// Time a rejection (`4xx`/`503`) gets to reach the client. Default 2 s.
        public var rejectionWrite: Duration
        /// After SIGTERM, how long running streams may go on before they are ended. Default 120 s.
        public var drain: Duration
        /// After the write side is shut down, how long we wait for the client to close before we
        /// close, so the kernel does not reset away the response's tail. Default 2 s.
        public var linger: Duration
        /// From starting an upstream request to its response head (connecting included); then
        /// the client gets `504`. Default 60 s.
        public var upstreamFirstByte: Duration
        /// Longest upstream silence between events while streaming. Default 120 s.
        public var upstreamIdle: Duration
        /// Longest stream, start to end. Default 30 min.
        public var maxStreamDuration: Duration
        /// A `: ping` comment goes to the client after this much silence (0: never). Default 15 s.
        public var keepAliveInterval: Duration

        public init(
            handoff: Duration = .seconds(5),
            write: Duration = .seconds(30),
            rejectionWrite: Duration = .seconds(2),
            drain: Duration = .seconds(120),
            linger: Duration = .seconds(2),
            upstreamFirstByte: Duration = .seconds(60),
            upstreamIdle: Duration = .seconds(120),
            maxStreamDuration: Duration = .seconds(1800),
            keepAliveInterval: Duration = .seconds(15)
        ) {
            self.handoff = handoff
            self.write = write
            self.rejectionWrite = rejectionWrite
            self.drain = drain
            self.linger = linger
            self.upstreamFirstByte = upstreamFirstByte
            self.upstreamIdle = upstreamIdle
            self.maxStreamDuration = maxStreamDuration
            self.keepAliveInterval = keepAliveInterval
        }
    }

    /// Redis for resumable streams and channels (`--redis-url`).
    public struct Redis: Sendable {
        /// The server, from `--redis-url`.
        public var connection: RedisConfiguration
        /// How long a finished stream stays resumable (its recording's TTL). Default 600 s.
        public var resumeTTL: Duration
        /// The start of every key and channel name this daemon uses. Default `handoff:`.
        public var keyPrefix: String

        public init(connection: RedisConfiguration, resumeTTL: Duration = .seconds(600), keyPrefix: String = "handoff:") {
            self.connection = connection
            self.resumeTTL = resumeTTL
            self.keyPrefix = keyPrefix
        }
    }

    /// The signed callback that gives the application each finished answer.
    public struct Completion: Sendable {
        /// The `http://` or `https://` URL the JSON document is POSTed to (no query string).
        public var url: UpstreamEndpoint
        /// The HMAC-SHA256 key for `X-Handoff-Signature` (from `--completion-secret-file`).
        public var secret: [UInt8]
        /// One attempt's deadline (connect to response head). Default 10 s.
        public var attemptTimeout: Duration
        /// How long an undelivered callback is retried before it is dropped. Default 24 h.
        public var maxAge: Duration
        /// Verify an https receiver's certificate. Default true.
        public var verifyCertificates: Bool

        public init(url: UpstreamEndpoint, secret: [UInt8], attemptTimeout: Duration = .seconds(10), maxAge: Duration = .seconds(86_400), verifyCertificates: Bool = true) {
            self.url = url
            self.secret = secret
            self.attemptTimeout = attemptTimeout
            self.maxAge = maxAge
            self.verifyCertificates = verifyCertificates
        }
    }

    /// The built-in mock backend: no upstream, a fixed script of messages.
    public struct Mock: Sendable {
        /// Content events per stream. Default 18.
        public var messages: Int
        /// Delay between content events; the first is sent at once. Default 50 ms.
        public var interval: Duration
        /// What the events say. Default ``Text/numbered``.
        public var text: Text

        /// The mock's words.
        public enum Text: String, Sendable, CaseIterable {
            /// "Mock message N of M for user U about …": easy to check in tests.
            case numbered
            /// Prose, one word per event: what a person watching a demo expects.
            case words
        }

        public init(messages: Int = 18, interval: Duration = .milliseconds(50), text: Text = .numbered) {
            self.messages = messages
            self.interval = interval
            self.text = text
        }
    }
}

/// The backends a handoff can ask for with `backend`.
public enum BackendKind: String, Sendable, Hashable, CaseIterable {
    /// Built-in scripted messages; no upstream.
    case mock
    /// An OpenAI-compatible chat completions API.
    case openai
    /// A LangGraph Platform deployment, by named profile.
    case langgraph
    /// A Redis pub/sub channel: every message published to it becomes an event.
    case channel
}

/// The `openai` backend.
public struct OpenAIBackend: Sendable {
    /// Where the API is and how to connect (base URL such as `https://api.openai.com/v1`).
    public var upstream: UpstreamSettings
    /// Sent as `Authorization: Bearer …`; from configuration or `OPENAI_API_KEY`, never a handoff.
    public var apiKey: String?
    /// The model when a handoff names none. Default `gpt-4o-mini`.
    public var defaultModel: String

    public init(upstream: UpstreamSettings, apiKey: String? = nil, defaultModel: String = "gpt-4o-mini") {
        self.upstream = upstream
        self.apiKey = apiKey
        self.defaultModel = defaultModel
    }
}

/// The `langgraph` backend: named profiles, chosen by the handoff's `profile`.
public struct LangGraphBackend: Sendable {
    public var profiles: [String: LangGraphProfile]
    /// The profile for handoffs that name none.
    public var defaultProfile: String?

    public init(profiles: [String: LangGraphProfile], defaultProfile: String? = nil) {
        self.profiles = profiles
        self.defaultProfile = defaultProfile ?? (profiles.count == 1 ? profiles.keys.first : nil)
    }
}
