/// What `handoff-exec` serves and its limits.
public struct ExecConfiguration: Sendable {
    /// The SEQPACKET socket Apache hands off to.
    public var socketPath: String
    /// The socket's mode. Default `0660`.
    public var socketMode: UInt32
    /// The socket's group (gid), if set.
    public var socketGroup: UInt32?
    /// Peers (uids) allowed to hand off; empty: anyone who can reach the socket.
    public var allowedPeerUIDs: Set<UInt32>
    /// The program run for each handoff, and its arguments.
    public var program: String
    public var arguments: [String]
    /// Children running at once; more handoffs are answered `503` by handoff-exec. Default 64.
    public var maxChildren: Int
    /// A child running longer is ended (SIGTERM, then SIGKILL after `killGrace`). Default 300 s.
    public var childTimeout: Duration
    /// Between SIGTERM and SIGKILL. Default 2 s.
    public var killGrace: Duration
    /// On SIGTERM, how long running children may finish before they are ended. Default 30 s.
    public var drainTimeout: Duration
    /// The wait for a handoff's record after its connection. Default 5 s.
    public var handoffTimeout: Duration
    /// Payloads up to this size are passed in `HANDOFF_DATA`; larger ones only as a file
    /// (`HANDOFF_DATA_FILE`). Default 64 KiB.
    public var maxEnvironmentPayloadBytes: Int
    /// The largest handoff record accepted. Default 1 MiB.
    public var maxPayloadBytes: Int
    /// Where payload files go (a private directory is made inside). Default `/tmp`.
    public var temporaryDirectory: String
    /// `Retry-After` on a `503`, in seconds. Default 1.
    public var retryAfterSeconds: Int

    public init(
        socketPath: String,
        socketMode: UInt32 = 0o660,
        socketGroup: UInt32? = nil,
        allowedPeerUIDs: Set<UInt32> = [],
        program: String,
        arguments: [String] = [],
        maxChildren: Int = 64,
        childTimeout: Duration = .seconds(300),
        killGrace: Duration = .seconds(2),
        drainTimeout: Duration = .seconds(30),
        handoffTimeout: Duration = .seconds(5),
        maxEnvironmentPayloadBytes: Int = 64 * 1024,
        maxPayloadBytes: Int = 1 << 20,
        temporaryDirectory: String = "/tmp",
        retryAfterSeconds: Int = 1
    ) {
        self.socketPath = socketPath
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.allowedPeerUIDs = allowedPeerUIDs
        self.program = program
        self.arguments = arguments
        self.maxChildren = maxChildren
        self.childTimeout = childTimeout
        self.killGrace = killGrace
        self.drainTimeout = drainTimeout
        self.handoffTimeout = handoffTimeout
        self.maxEnvironmentPayloadBytes = maxEnvironmentPayloadBytes
        self.maxPayloadBytes = maxPayloadBytes
        self.temporaryDirectory = temporaryDirectory
        self.retryAfterSeconds = retryAfterSeconds
    }
}
