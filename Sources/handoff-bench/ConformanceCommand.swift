public import ArgumentParser
import Foundation
public import HandoffBench
import NIOPosix

/// `handoff-bench conformance`: the scenario catalogue against any daemon socket.
struct ConformanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run the conformance scenarios against a daemon streaming from handoff-mock-llm."
    )

    @Option(help: "The daemon's handoff socket.") var socket: String
    @Option(help: "Origin of the handoff-mock-llm the daemon streams from, e.g. https://127.0.0.1:8443.") var upstream: String
    @Option(name: .customLong("upstream-ca-file"), help: "PEM to verify the mock's TLS certificate (loopback TLS is not verified without it).") var upstreamCAFile: String?
    @Option(help: "Output: human, tap or json.") var format: ConformanceRunner.Format = .human
    @Option(help: "The backend name to put in handoffs.") var backend = "openai"
    @Option(name: .customLong("first-byte-timeout-ms"), help: "The daemon's upstream first-byte timeout (the stall scenario waits past it).") var firstByteTimeoutMs = 60_000
    @Option(name: .customLong("idle-timeout-ms"), help: "The daemon's upstream idle timeout (the hang scenario waits past it).") var idleTimeoutMs = 120_000
    @Option(help: "Run only scenarios whose name contains this.") var only: String?

    func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let stats = try UpstreamStatsClient(origin: self.upstream, trustedCertificatesFile: self.upstreamCAFile, group: group)
        let (status, body) = try await stats.request("/health")
        guard status == 200, let health = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let chunkCount = health["chunk_count"] as? Int
        else {
            throw ValidationError("\(self.upstream)/health did not answer like handoff-mock-llm (status \(status))")
        }
        let context = ConformanceContext(
            socketPath: self.socket,
            upstream: stats,
            chunkCount: chunkCount,
            backend: self.backend,
            firstByteTimeoutMilliseconds: self.firstByteTimeoutMs,
            idleTimeoutMilliseconds: self.idleTimeoutMs
        )
        let runner = ConformanceRunner(context: context)
        let human = self.format == .human
        let results = await runner.run(filter: self.only) { result in
            if human {
                FileHandle.standardError.write(Data("\(result.passed ? "." : "F")".utf8))
            }
        }
        if human { FileHandle.standardError.write(Data("\n".utf8)) }
        print(ConformanceRunner.render(results, format: self.format), terminator: "")
        if results.contains(where: { !$0.passed }) { throw ExitCode(1) }
    }
}

extension ConformanceRunner.Format: ExpressibleByArgument {}
