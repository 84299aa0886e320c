import ArgumentParser
import HandoffExec

#if canImport(Glibc)
import Glibc
#endif

/// `handoff-exec --socket PATH [options] -- PROGRAM [ARGS…]`
@main
struct HandoffExecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff-exec",
        abstract: "Receive handoffs from mod_socket_handoff and run a program per connection.",
        discussion: """
            The program's stdin and stdout are the client's socket: it writes the whole HTTP \
            response. The handoff JSON is in HANDOFF_DATA (up to --max-env-payload-bytes), or \
            in the file named by HANDOFF_DATA_FILE when larger. Over --max-children, the client \
            gets 503 with Retry-After from handoff-exec itself.
            """
    )

    @Option(help: "The SEQPACKET socket to listen on.")
    var socket: String

    @Option(help: "The socket's permission bits, octal.")
    var socketMode: String = "0660"

    @Option(help: "Only these peer uids may hand off (repeatable); default: anyone who can reach the socket.")
    var allowUid: [UInt32] = []

    @Option(help: "Handlers running at once.")
    var maxChildren: Int = 64

    @Option(help: "Seconds a handler may run before SIGTERM (then SIGKILL 2 s later).")
    var timeoutS: Int = 300

    @Option(help: "On SIGTERM, seconds running handlers may finish.")
    var drainTimeoutS: Int = 30

    @Option(help: "Payloads up to this many bytes go in HANDOFF_DATA; larger ones in a file.")
    var maxEnvPayloadBytes: Int = 64 * 1024

    @Option(help: "Where the files of larger payloads go (in a private directory made there).")
    var payloadDirectory: String = "/tmp"

    @Argument(parsing: .captureForPassthrough, help: "The program (absolute path) and its arguments, after --.")
    var command: [String] = []

    mutating func validate() throws {
        if self.command.first == "--" { self.command.removeFirst() }
        guard let program = self.command.first else { throw ValidationError("name the program to run after --") }
        guard program.hasPrefix("/") else { throw ValidationError("the program must be an absolute path: \(program)") }
        guard access(program, X_OK) == 0 else { throw ValidationError("not an executable file: \(program)") }
        guard UInt32(self.socketMode, radix: 8) != nil else { throw ValidationError("--socket-mode must be octal, like 0660") }
        guard self.maxChildren > 0 else { throw ValidationError("--max-children must be at least 1") }
        guard self.timeoutS > 0, self.drainTimeoutS >= 0 else { throw ValidationError("--timeout-s must be positive and --drain-timeout-s not negative") }
    }

    func run() throws {
        let configuration = ExecConfiguration(
            socketPath: self.socket,
            socketMode: UInt32(self.socketMode, radix: 8)!,
            allowedPeerUIDs: Set(self.allowUid),
            program: self.command[0],
            arguments: Array(self.command.dropFirst()),
            maxChildren: self.maxChildren,
            childTimeout: .seconds(self.timeoutS),
            drainTimeout: .seconds(self.drainTimeoutS),
            maxEnvironmentPayloadBytes: self.maxEnvPayloadBytes,
            temporaryDirectory: self.payloadDirectory
        )
        let server = ExecServer(configuration: configuration) { line in
            FileHandleStandardError.write(line)
        }
        do {
            try server.run()
        } catch {
            FileHandleStandardError.write("handoff-exec: \(error)")
            throw ExitCode(1)
        }
    }
}

/// One line to stderr, unbuffered.
enum FileHandleStandardError {
    static func write(_ line: String) {
        let text = line + "\n"
        _ = text.withCString { Glibc.write(STDERR_FILENO, $0, strlen($0)) }
    }
}
