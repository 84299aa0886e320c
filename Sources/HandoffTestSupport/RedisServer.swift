import Foundation
import Synchronization
import HandoffClientKit

/// A private `redis-server` on a free loopback port, for one test: no persistence, stopped
/// by its pid. `stop()` and `start()` again on the same port play a Redis outage.
///
/// Every call that waits (starting, stopping, `redis-cli`) runs on a thread of its own: async
/// tests must never block the few threads Swift concurrency has (2 on this machine), or every
/// other test's timing suffers.
public final class RedisServer: @unchecked Sendable {
    // @unchecked Sendable: `process` is only touched by the test that owns the server, one call at a time.
    public let port: Int
    public let password: String?
    /// Serves TLS only (a self-signed certificate made at start).
    public let tls: Bool
    private var process: Process?
    private let directory: String

    /// `redis://127.0.0.1:PORT` (with the password when there is one; `rediss://` with TLS).
    public var url: String {
        let scheme = self.tls ? "rediss" : "redis"
        if let password { return "\(scheme)://:\(password)@127.0.0.1:\(self.port)" }
        return "\(scheme)://127.0.0.1:\(self.port)"
    }

    /// Whether `redis-server` is on this machine (`scripts/install-deps.sh` installs it).
    public static var isAvailable: Bool { Self.executable != nil }

    private static let executable: String? = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Starts a server (on a thread of its own) and returns once it accepts connections.
    public static func start(password: String? = nil, tls: Bool = false) async throws -> RedisServer {
        try await onThread { try RedisServer(password: password, tls: tls) }
    }

    private init(password: String? = nil, tls: Bool = false) throws {
        self.port = try freeLoopbackPort()
        self.password = password
        self.tls = tls
        self.directory = try makeTemporaryDirectory()
        if tls {
            let openssl = Process()
            openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            openssl.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                                 "-keyout", self.directory + "/key.pem", "-out", self.directory + "/cert.pem"]
            openssl.standardOutput = FileHandle.nullDevice
            openssl.standardError = FileHandle.nullDevice
            try openssl.run()
            openssl.waitUntilExit()
            guard openssl.terminationReason == .exit, openssl.terminationStatus == 0 else {
                throw RedisServerError(message: "openssl could not make the test certificate (status \(openssl.terminationStatus))")
            }
        }
        try self.startNow()
    }

    deinit {
        // No waiting here: the process is killed and reaped by Foundation.
        if let process = self.process { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// Starts the server again (after ``stop()``) and waits until it accepts connections.
    public func start() async throws {
        try await onThread { try self.startNow() }
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown) and waits for it to exit.
    public func stop() async {
        _ = try? await onThread { self.stopNow() }
    }

    private func startNow() throws {
        guard self.process == nil else { return }
        guard let executable = Self.executable else { throw RedisServerError(message: "redis-server is not installed (scripts/install-deps.sh)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        var arguments = ["--port", String(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.directory, "--daemonize", "no", "--loglevel", "warning"]
        if let password { arguments += ["--requirepass", password] }
        if self.tls {
            arguments[1] = "0"
            arguments += ["--tls-port", String(self.port), "--tls-cert-file", self.directory + "/cert.pem",
                          "--tls-key-file", self.directory + "/key.pem", "--tls-ca-cert-file", self.directory + "/cert.pem",
                          "--tls-auth-clients", "no"]
        }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if canConnect(port: self.port) { return }
            usleep(10_000)
        }
        self.stopNow()
        throw RedisServerError(message: "redis-server did not listen on port \(self.port) within 10 s")
    }

    private func stopNow() {
        guard let process = self.process else { return }
        self.process = nil
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Runs `redis-cli` with `arguments` against this server and returns its output.
    public func cli(_ arguments: [String]) async throws -> String {
        try await onThread { try self.cliNow(arguments) }
    }

    private func cliNow(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
        var all = ["-p", String(self.port)]
        if let password { all += ["-a", password, "--no-auth-warning"] }
        process.arguments = all + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

public struct RedisServerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { self.message }
}

/// A loopback TCP port nobody listens on now (a listener on port 0, read back, closed).
public func freeLoopbackPort() throws -> Int {
    while true {
        let port = try LoopbackListener(backlog: 1).port
        if handedOutPorts.withLock({ $0.insert(port).inserted }) { return port }
    }
}

/// Every port ``freeLoopbackPort()`` gave out in this process: never twice, so a server that
/// stops and starts again on its port (an outage test) finds no other test's server there.
private let handedOutPorts = Mutex<Set<Int>>([])

private func canConnect(port: Int) -> Bool {
    guard let connection = try? LoopbackTCP.connect(port: port) else { return false }
    connection.closeIfOpen()
    return true
}
