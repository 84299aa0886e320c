import ArgumentParser

/// The load generator and conformance runner: plays Apache against a daemon.
@main
struct HandoffBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff-bench",
        abstract: "Plays Apache against a handoff daemon: conformance scenarios and load.",
        subcommands: [LoadCommand.self, HTTPCommand.self, ConformanceCommand.self, WorkerCommand.self]
    )
}
