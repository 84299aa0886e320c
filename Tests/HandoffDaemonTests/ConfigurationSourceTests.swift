import Foundation
import HandoffTestSupport
import HandoffDaemon
import Testing

@Suite struct ConfigurationSourceTests {
    @Test func defaults() throws {
        let configuration = try ConfigurationSource.resolve(flags: ["socket": "/run/h.sock"], environment: [:])
        #expect(configuration.listener.socketPath == "/run/h.sock")
        #expect(configuration.listener.socketMode == 0o660)
        #expect(configuration.limits.maxHandoffBytes == 131_072)
        #expect(configuration.limits.maxConnections == nil)
        #expect(configuration.mock.messages == 18)
        #expect(configuration.mock.interval == .milliseconds(50))
        #expect(configuration.timeouts.write == .seconds(30))
        #expect(configuration.timeouts.drain == .seconds(120))
        #expect(configuration.timeouts.handoff == .seconds(5))
        #expect(configuration.defaultBackend == .mock)
        #expect(configuration.loopBatchWindow == .milliseconds(5))
    }

    @Test func theLoopBatchWindowIsBounded() throws {
        let off = try ConfigurationSource.resolve(flags: ["socket": "/run/h.sock", "loop-batch-us": "0"], environment: [:])
        #expect(off.loopBatchWindow == .zero)
        let most = try ConfigurationSource.resolve(flags: ["socket": "/run/h.sock"], environment: ["HANDOFFD_LOOP_BATCH_US": "10000"])
        #expect(most.loopBatchWindow == .milliseconds(10))
        #expect(throws: ConfigurationError.self) { _ = try ConfigurationSource.resolve(flags: ["socket": "/run/h.sock", "loop-batch-us": "10001"], environment: [:]) }
        var configuration = off
        configuration.loopBatchWindow = .milliseconds(11)
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
    }

    @Test func flagsWinOverEnvironment() throws {
        let configuration = try ConfigurationSource.resolve(
            flags: ["socket": "/run/flag.sock", "mock-messages": "3"],
            environment: ["HANDOFFD_SOCKET": "/run/env.sock", "HANDOFFD_MOCK_MESSAGES": "9", "HANDOFFD_MAX_CONNECTIONS": "7"]
        )
        #expect(configuration.listener.socketPath == "/run/flag.sock")
        #expect(configuration.mock.messages == 3)
        #expect(configuration.limits.maxConnections == 7)
    }

    @Test func zeroIsExpressibleWhereItMeansSomething() throws {
        let configuration = try ConfigurationSource.resolve(
            flags: ["socket": "/run/h.sock", "max-connections": "0", "drain-timeout-s": "0", "mock-interval-ms": "0", "linger-ms": "0"],
            environment: [:]
        )
        #expect(configuration.limits.maxConnections == 0)
        #expect(configuration.timeouts.drain == .zero)
        #expect(configuration.mock.interval == .zero)
    }

    @Test(arguments: [
        (["mock-messages": "many"], [String: String](), "--mock-messages"),
        ([:], ["HANDOFFD_WRITE_TIMEOUT_S": "0"], "HANDOFFD_WRITE_TIMEOUT_S"),
        (["socket-mode": "999"], [:], "--socket-mode"),
        (["backend": "gpt"], [:], "--backend"),
        (["max-handoff-bytes": "-1"], [:], "--max-handoff-bytes"),
        (["socket-group": "no-such-group-here"], [:], "--socket-group"),
    ])
    func errorsNameTheKey(flags: [String: String], environment: [String: String], key: String) {
        var all = flags
        all["socket"] = "/run/h.sock"
        let error = #expect(throws: ConfigurationError.self) { _ = try ConfigurationSource.resolve(flags: all, environment: environment) }
        #expect(error?.key == key)
    }

    @Test func socketIsRequiredAndAbsolute() {
        #expect(throws: ConfigurationError.self) { _ = try ConfigurationSource.resolve(flags: [:], environment: [:]) }
        #expect(throws: ConfigurationError.self) { _ = try ConfigurationSource.resolve(flags: ["socket": "relative.sock"], environment: [:]) }
    }
}

@Suite struct ConfigurationFileTests {
    private func write(_ yaml: String) throws -> String {
        let path = try makeTemporaryDirectory() + "/handoffd.yaml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func fileValuesSitBelowEnvironmentAndFlags() throws {
        let path = try self.write(
            """
            socket: /run/file.sock
            mock-messages: 4
            max-connections: 9
            access-log: false
            """
        )
        let configuration = try ConfigurationSource.resolve(
            flags: ["config": path, "mock-messages": "2"],
            environment: ["HANDOFFD_MAX_CONNECTIONS": "7"]
        )
        #expect(configuration.listener.socketPath == "/run/file.sock")
        #expect(configuration.mock.messages == 2)
        #expect(configuration.limits.maxConnections == 7)
        #expect(configuration.accessLog == false)
    }

    /// `workers` and `log-level` honour the file like every other key.
    @Test func workersAndLogLevelComeFromTheFileToo() throws {
        let path = try self.write("socket: /run/h.sock\nworkers: 3\nlog-level: debug\n")
        let configuration = try ConfigurationSource.resolve(flags: ["config": path], environment: [:])
        #expect(configuration.workers == 3 && configuration.logLevel == "debug")
        let flagged = try ConfigurationSource.resolve(flags: ["config": path, "log-level": "error"], environment: ["HANDOFFD_WORKERS": "2"])
        #expect(flagged.workers == 2 && flagged.logLevel == "error")
        let bad = try self.write("socket: /run/h.sock\nlog-level: loud\n")
        #expect(throws: ConfigurationError.self) { _ = try ConfigurationSource.resolve(flags: ["config": bad], environment: [:]) }
    }

    /// The command line is the table too: every key is an option, the last of repeated ones
    /// wins, switches need no value, and what is unknown or incomplete names itself.
    @Test func theCommandLineComesFromTheTable() throws {
        let parsed = try ConfigurationSource.parseArguments([
            "--socket", "/run/a.sock", "--metrics-address", "off", "--metrics-address=127.0.0.1:9", "--upstream-insecure", "--check-config",
        ])
        #expect(parsed.values == ["socket": "/run/a.sock", "metrics-address": "127.0.0.1:9", "upstream-insecure": "true"])
        #expect(parsed.checkConfig && !parsed.exampleConfig && !parsed.help)
        for key in ConfigurationSource.keys {
            let value = try ConfigurationSource.parseArguments(["--\(key.name)=x"]).values[key.name]
            #expect(value == "x")
        }
        for (arguments, message) in [(["--sokcet", "/x"], "--sokcet: unknown option"), (["--socket"], "--socket: needs a value"), (["stray"], "stray: is not an option")] {
            #expect {
                try ConfigurationSource.parseArguments(arguments)
            } throws: { error in
                "\(error)".hasPrefix(message)
            }
        }
        let help = ConfigurationSource.helpText()
        for key in ConfigurationSource.keys { #expect(help.contains("--\(key.name)") && help.contains(key.environment)) }
    }

    /// The README's configuration table documents every key of the one table.
    @Test func theReadmeDocumentsEveryKey() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        for key in ConfigurationSource.keys {
            #expect(text.contains("`--\(key.name)"), "README.md does not mention --\(key.name)")
        }
    }

    /// The example file names every key (commented) and is itself a valid configuration.
    @Test func theExampleFileHasEveryKeyAndLoads() throws {
        let text = ConfigurationSource.exampleFile()
        for key in ConfigurationSource.keys where key.name != "config" && key.name != "socket" {
            #expect(text.contains("\n#\(key.name):\n"), "\(key.name) missing")
        }
        let configuration = try ConfigurationSource.resolve(flags: ["config": try self.write(text)], environment: [:])
        #expect(configuration.listener.socketPath == "/run/handoffd/handoffd.sock")
    }

    @Test func langGraphProfilesComeFromTheFile() throws {
        let path = try self.write(
            """
            socket: /run/h.sock
            langgraph:
              default-profile: support
              profiles:
                support:
                  url: https://support.example.com
                  api-key-env: LG_KEY
                  assistant: agent
                  stream-mode: [values, messages]
                research:
                  url: http://127.0.0.1:2024
                  http: h2
            """
        )
        let configuration = try ConfigurationSource.resolve(flags: ["config": path], environment: ["LG_KEY": "secret"])
        let langGraph = try #require(configuration.langGraph)
        #expect(langGraph.defaultProfile == "support")
        #expect(langGraph.profiles["support"]?.apiKey == "secret")
        #expect(langGraph.profiles["support"]?.streamMode == ["values", "messages"])
        #expect(langGraph.profiles["support"]?.upstream.httpVersion == .http2)
        #expect(langGraph.profiles["research"]?.upstream.endpoint.port == 2024)
        #expect(langGraph.profiles["research"]?.upstream.httpVersion == .http2)
    }

    @Test(arguments: [
        ("socket: /run/h.sock\nsokcet: typo\n", "sokcet"),
        ("socket: [a, b]\n", "socket"),
        ("socket: /run/h.sock\nlanggraph:\n  profiles:\n    a:\n      assistant: x\n", "langgraph.profiles.a.url"),
        ("socket: /run/h.sock\nlanggraph:\n  profiles:\n    a:\n      url: https://x\n      colour: red\n", "langgraph.profiles.a.colour"),
        ("socket: /run/h.sock\nmock-messages: lots\n", "mock-messages"),
    ])
    func mistakesNameTheKey(yaml: String, key: String) throws {
        let path = try self.write(yaml)
        let error = #expect(throws: ConfigurationError.self) { _ = try ConfigurationSource.resolve(flags: ["config": path], environment: [:]) }
        #expect(error?.key.hasSuffix(key) == true, "key was \(error?.key ?? "nil")")
    }
}
