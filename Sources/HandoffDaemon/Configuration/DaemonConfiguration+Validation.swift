/// A configuration value that cannot work, named by its key.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// The key as the operator wrote it (flag name, environment variable or file key).
    public var key: String
    /// What is wrong and what would be right.
    public var message: String

    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { "\(self.key): \(self.message)" }
}

extension DaemonConfiguration {
    /// Checks every value once; the first problem is thrown, naming its key.
    public func validate() throws(ConfigurationError) {
        if self.listener.inheritedDescriptor == nil {
            guard self.listener.socketPath.hasPrefix("/") else {
                throw ConfigurationError(key: "socket", message: "must be an absolute path, got '\(self.listener.socketPath)'")
            }
            guard self.listener.socketPath.utf8.count <= 107 else {
                throw ConfigurationError(key: "socket", message: "is \(self.listener.socketPath.utf8.count) bytes; Unix socket paths hold at most 107")
            }
        }
        guard self.listener.socketMode <= 0o777 else {
            throw ConfigurationError(key: "socket-mode", message: "must be octal permission bits (0000–0777), got \(String(self.listener.socketMode, radix: 8))")
        }
        guard self.loopBatchWindow >= .zero, self.loopBatchWindow <= .milliseconds(10) else {
            throw ConfigurationError(key: "loop-batch-us", message: "must be between 0 and 10000 microseconds, got \(self.loopBatchWindow)")
        }
        guard self.listener.backlog > 0 else {
            throw ConfigurationError(key: "backlog", message: "must be at least 1")
        }
        if let max = self.limits.maxConnections, max < 0 {
            throw ConfigurationError(key: "max-connections", message: "must be 0 or more (0 refuses every stream with 503)")
        }
        guard (1...16 * 1024 * 1024).contains(self.limits.maxHandoffBytes) else {
            throw ConfigurationError(key: "max-handoff-bytes", message: "must be between 1 and 16777216, got \(self.limits.maxHandoffBytes)")
        }
        guard self.mock.messages >= 0 else {
            throw ConfigurationError(key: "mock-messages", message: "must be 0 or more")
        }
        try Self.checkPositive(self.timeouts.handoff, key: "handoff-timeout-ms")
        try Self.checkPositive(self.timeouts.write, key: "write-timeout-s")
        try Self.checkPositive(self.timeouts.rejectionWrite, key: "rejection-write-timeout-ms")
        try Self.checkNotNegative(self.timeouts.drain, key: "drain-timeout-s")
        try Self.checkNotNegative(self.timeouts.linger, key: "linger-ms")
        try Self.checkNotNegative(self.mock.interval, key: "mock-interval-ms")
    }

    private static func checkPositive(_ duration: Duration, key: String) throws(ConfigurationError) {
        guard duration > .zero else { throw ConfigurationError(key: key, message: "must be greater than 0") }
    }

    private static func checkNotNegative(_ duration: Duration, key: String) throws(ConfigurationError) {
        guard duration >= .zero else { throw ConfigurationError(key: key, message: "must be 0 or more") }
    }
}
