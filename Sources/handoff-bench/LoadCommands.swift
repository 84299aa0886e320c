public import ArgumentParser
import Foundation
public import HandoffBench

/// Options shared by `load` and `http`.
struct LoadOptions: ParsableArguments {
    @Option(help: "Concurrent streams.") var connections = 100
    @Option(name: .customLong("ramp-up"), help: "Seconds over which streams start (one-shot) or the load builds (sustained).") var rampUp: Double = 0
    @Option(help: "Seconds: sustained load duration, or extra wait after the ramp for one-shot runs.") var hold: Double = 30
    @Option(name: .customLong("stream-timeout"), help: "Seconds after which a stream counts as timed out.") var streamTimeout: Double = 60
    @Flag(help: "Closed loop: every finished stream starts a new one until --hold ends.") var sustained = false
    @Option(help: "The handoff JSON (load) or request body (http); each {n} becomes an id unique to the handoff (e.g. a stream_id).") var data = #"{"prompt":"load","user_id":1}"#
    @Option(name: .customLong("expect-events"), help: "Content events a complete stream has (default: any count).") var expectEvents: Int?
    @Option(help: "Worker processes to spread the connections over (20 000 descriptors per process here).") var processes = 1
    @Option(help: "Sample this process's RSS and CPU each second (the daemon).") var pid: Int32?
    @Option(help: "Write the report as JSON here.") var json: String?
    @Option(help: "Write the report as Markdown here.") var markdown: String?
    @Option(help: "Title of the Markdown section.") var title = "handoff-bench"
    @Option(name: .customLong("mark-file"), help: "A file that will hold a CLOCK_MONOTONIC time in ns: first content is also timed from it (after_mark), e.g. from a PUBLISH.") var markFile: String?
    @Option(name: .customLong("ack-timeout-ms"), help: "load: ask for the acknowledged handoff and wait this long for it (as SocketHandoffAck On does).") var ackTimeoutMs: Int?

    func configuration(target: LoadConfiguration.Target) -> LoadConfiguration {
        var configuration = LoadConfiguration(
            target: target,
            connections: self.connections,
            rampUp: .milliseconds(Int64(self.rampUp * 1000)),
            hold: .milliseconds(Int64(self.hold * 1000)),
            streamTimeout: .milliseconds(Int64(self.streamTimeout * 1000)),
            sustained: self.sustained,
            payload: Array(self.data.utf8),
            expectedEvents: self.expectEvents,
            ackTimeoutMilliseconds: self.ackTimeoutMs
        )
        configuration.markFile = self.markFile
        return configuration
    }

    func run(_ configuration: LoadConfiguration) throws {
        let coordinator = LoadCoordinator(
            configuration: configuration,
            processes: max(1, self.processes),
            daemonPID: self.pid,
            liveProgress: isatty(STDERR_FILENO) == 1
        )
        let report = try coordinator.run()
        print(report.text, terminator: "")
        if let path = self.json { try report.json().write(to: URL(fileURLWithPath: path)) }
        if let path = self.markdown { try report.markdown(title: self.title).write(toFile: path, atomically: true, encoding: .utf8) }
        if report.result.failed > 0 { throw ExitCode(1) }
    }
}

/// `handoff-bench load`: plays Apache against a daemon socket.
struct LoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "load", abstract: "Hand off streams to a daemon exactly as Apache does and measure them.")

    @Option(help: "The daemon's handoff socket.") var socket: String
    @Option(help: "Client end: socketpair or tcp (a real loopback TCP connection).") var client: LoadConfiguration.ClientKind = .socketpair
    @OptionGroup var options: LoadOptions

    func run() throws {
        try self.options.run(self.options.configuration(target: .handoff(socketPath: self.socket, client: self.client)))
    }
}

/// `handoff-bench http`: drives the same load through a real Apache over HTTP.
struct HTTPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "http", abstract: "POST to a URL on a real Apache (which hands off) and measure the streams.")

    @Option(help: "http://127.0.0.1:PORT/path of the handoff endpoint.") var url: String
    @OptionGroup var options: LoadOptions

    func run() throws {
        guard let components = URLComponents(string: self.url), components.scheme == "http", let host = components.host, let port = components.port else {
            throw ValidationError("--url must be http://HOST:PORT/path")
        }
        let path = components.path.isEmpty ? "/" : components.path + (components.query.map { "?" + $0 } ?? "")
        try self.options.run(self.options.configuration(target: .http(host: host, port: port, path: path)))
    }
}

/// One worker process of a multi-process run (internal): runs its share and prints JSON lines.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker", abstract: "Internal: one worker process of a run.", shouldDisplay: false)

    @Argument var configurationJSON: String

    func run() throws {
        let configuration = try JSONDecoder().decode(LoadConfiguration.self, from: Data(self.configurationJSON.utf8))
        let encoder = JSONEncoder()
        func emit(_ message: WorkerMessage) {
            if let data = try? encoder.encode(message) {
                FileHandle.standardOutput.write(data + Data([0x0A]))
            }
        }
        let worker = try LoadWorker(configuration: configuration)
        let result = worker.run { emit(WorkerMessage(progress: $0)) }
        emit(WorkerMessage(result: result))
    }
}

extension LoadConfiguration.ClientKind: ExpressibleByArgument {}
