import Foundation
import HandoffDaemon
import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import MetricsTestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every malformed handoff is refused and counted; a client we hold gets a real HTTP answer;
/// the daemon keeps serving and holds no descriptor afterwards.
@Suite struct DaemonRejectionTests {
    private func errorBody(_ response: ReceivedResponse) throws -> [String: String] {
        try #require(JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: String])
    }

    @Test(arguments: [
        ("{not json", "invalid_json"),
        ("[1,2,3]", "invalid_json"),
        (#"{"prompt":5}"#, "wrong_type"),
        (#"{"messages":[{"role":"user","content":7}]}"#, "wrong_type"),
        (#"{"max_tokens":"many"}"#, "wrong_type"),
        (#"{"temperature":9}"#, "invalid_value"),
        (#"{"response_headers":{"X-A":"line\r\nInjected: 1"}}"#, "invalid_value"),
        (#"{"model":"\#(String(repeating: "m", count: 300))"}"#, "field_too_large"),
        (#"{"backend":"nonesuch"}"#, "unknown_backend"),
    ])
    func badJSONGets400(json: String, code: String) async throws {
        try await withDaemon { daemon, metrics in
            let result = try await exchange(daemon, json: json)
            #expect(result.closed)
            let response = try #require(result.response)
            #expect(response.statusLine == "HTTP/1.1 400 Bad Request")
            #expect(response.header("Content-Type") == "application/json")
            #expect(response.header("Connection") == "close")
            #expect(response.header("Content-Length") == String(response.body.utf8.count))
            #expect(try self.errorBody(response)["error"] == code)
            #expect(metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", code)]) == 1)
            #expect(await eventually { daemon.heldClientDescriptors == 0 })
        }
    }

    /// A field that reaches logs, headers or the upstream must not carry a line break (or any
    /// control character): it could forge a log line.
    @Test(arguments: ["request_id", "user_id", "model", "test_pattern", "thread_id", "profile", "backend"])
    func controlCharactersInAnIdentifierGet400NamingTheField(field: String) async throws {
        try await withDaemon { daemon, _ in
            let json = #"{"\#(field)":"a\nFORGED-LINE x=1"}"#
            let response = try #require(try await exchange(daemon, json: json).response)
            #expect(response.status == 400)
            let body = try self.errorBody(response)
            #expect(body["error"] == "invalid_value")
            #expect(body["message"]?.contains(field) == true)
        }
    }

    @Test func invalidUTF8Gets400() async throws {
        try await withDaemon { daemon, _ in
            let payload: [UInt8] = Array(#"{"prompt":""#.utf8) + [0xC3, 0x28, 0xFF] + Array(#""}"#.utf8)
            let response = try #require(try await exchange(daemon, payload: payload).response)
            #expect(response.status == 400)
            #expect(try self.errorBody(response)["error"] == "invalid_json")
        }
    }

    @Test func oversizedPayloadGets413() async throws {
        try await withDaemon({ $0.limits.maxHandoffBytes = 1024 }) { daemon, metrics in
            let json = #"{"prompt":"\#(String(repeating: "x", count: 4000))"}"#
            let response = try #require(try await exchange(daemon, json: json).response)
            #expect(response.statusLine == "HTTP/1.1 413 Content Too Large")
            #expect(try self.errorBody(response)["error"] == "payload_too_large")
            #expect(metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "payload_too_large")]) == 1)
        }
    }

    @Test func overCapacityGets503WithRetryAfter() async throws {
        try await withDaemon({
            $0.limits.maxConnections = 1
            $0.mock = .init(messages: 1000, interval: .milliseconds(20))
        }) { daemon, _ in
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            try FakeApache.handOff(to: daemon.socketPath, json: "{}", server: server)
            _ = try await FakeApache.read(until: "Mock message 1 ", from: client.rawValue)
            let result = try await exchange(daemon, json: "{}")
            let response = try #require(result.response)
            #expect(response.statusLine == "HTTP/1.1 503 Service Unavailable")
            #expect(response.header("Retry-After") == "1")
            #expect(try self.errorBody(response)["error"] == "over_capacity")
            #expect(result.closed)
        }
    }

    @Test func zeroMaxConnectionsRefusesEverything() async throws {
        try await withDaemon({ $0.limits.maxConnections = 0 }) { daemon, _ in
            let status = try await exchange(daemon, json: "{}").response?.status
            #expect(status == 503)
        }
    }

    @Test func recordWithoutDescriptorIsCountedAndTheDaemonKeepsServing() async throws {
        try await withDaemon { daemon, metrics in
            try FakeApache.handOff(to: daemon.socketPath, payload: Array("{}".utf8), descriptors: [])
            #expect(await eventually { metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "missing_fd")]) == 1 })
            #expect(try await exchange(daemon, json: "{}").response?.status == 200)
        }
    }

    @Test func twoDescriptorsAnswerTheFirstAndCloseTheExtra() async throws {
        try await withDaemon { daemon, metrics in
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            let (extraClient, extraServer) = try FakeApache.tcpConnection()
            defer { extraClient.closeIfOpen() }
            try FakeApache.handOff(to: daemon.socketPath, payload: Array("{}".utf8), descriptors: [server.rawValue, extraServer.rawValue])
            server.closeIfOpen()
            extraServer.closeIfOpen()
            let response = try #require(ReceivedResponse(try await FakeApache.response(from: client.rawValue).bytes))
            #expect(response.status == 400)
            #expect(try self.errorBody(response)["error"] == "extra_fds")
            let extra = try await FakeApache.response(from: extraClient.rawValue, timeoutMilliseconds: 2000)
            #expect(extra.closed)
            #expect(extra.bytes.isEmpty)
            #expect(metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "extra_fds")]) == 1)
        }
    }

    @Test func pipeAndListeningSocketAreDropped() async throws {
        try await withDaemon { daemon, metrics in
            var ends: [CInt] = [-1, -1]
            #expect(pipe(&ends) == 0)
            let reader = OwnedDescriptor(taking: ends[0])
            defer { reader.closeIfOpen() }
            let writer = OwnedDescriptor(taking: ends[1])
            try FakeApache.handOff(to: daemon.socketPath, payload: Array("{}".utf8), descriptors: [writer.rawValue])
            writer.closeIfOpen()
            try await withTemporaryDirectory { directory in
                let listener = try SeqpacketListener.bind(path: directory + "/l.sock")
                defer { listener.close() }
                try FakeApache.handOff(to: daemon.socketPath, payload: Array("{}".utf8), descriptors: [listener.rawDescriptor])
                #expect(await eventually { metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "invalid_fd")]) == 2 })
            }
            // The daemon closed its copy of the pipe's write end: the reader sees end of file.
            let eof = try await onThread { [fd = reader.rawValue] in FakeApache.readUntilClosed(fd, timeoutMilliseconds: 2000) }
            #expect(eof.closed && eof.bytes.isEmpty)
            #expect(try await exchange(daemon, json: "{}").response?.status == 200)
        }
    }

    @Test func silentPeerIsCutOffAfterTheHandoffTimeout() async throws {
        try await withDaemon({ $0.timeouts.handoff = .milliseconds(300) }) { daemon, metrics in
            // From before the connection (the daemon's clock cannot start earlier) to the close
            // as the reading thread sees it: a test pool busy with the rest of the suite may
            // resume this task late, which says nothing about the daemon.
            let started = FakeApache.monotonicMilliseconds()
            let connection = try #require(try HandoffSender.connect(to: daemon.socketPath))
            defer { connection.closeIfOpen() }
            let (closed, elapsed) = try await onThread { [fd = connection.rawValue] in
                let result = FakeApache.readUntilClosed(fd, timeoutMilliseconds: 4500)
                return (result.closed, FakeApache.monotonicMilliseconds() - started)
            }
            #expect(closed)
            // The configured 300 ms, not the 5 s default; the room above is for the suite's load.
            #expect(elapsed >= 250 && elapsed < 4000, "closed after \(elapsed) ms")
            #expect(await eventually { metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "timeout")]) == 1 })
            #expect(try await exchange(daemon, json: "{}").response?.status == 200)
        }
    }

    @Test func peerClosingWithoutARecordIsCounted() async throws {
        try await withDaemon { daemon, metrics in
            try #require(try HandoffSender.connect(to: daemon.socketPath)).closeIfOpen()
            #expect(await eventually { metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "no_message")]) == 1 })
        }
    }
}

/// `--allow-uid`: only the listed users may hand off (`SO_PEERCRED`).
@Suite struct PeerAllowListTests {
    @Test func onlyAllowedUsersMayHandOff() async throws {
        let me = UInt32(getuid())
        try await withDaemon({ $0.listener.allowedPeerUIDs = [me] }) { daemon, _ in
            let status = try await exchange(daemon, json: "{}").response?.status
            #expect(status == 200)
        }
        try await withDaemon({ $0.listener.allowedPeerUIDs = [me &+ 4242] }) { daemon, metrics in
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            try FakeApache.handOff(to: daemon.socketPath, json: "{}", server: server)
            // Refused before its record was read: the client connection is closed unanswered.
            let result = try await FakeApache.response(from: client.rawValue, timeoutMilliseconds: 3000)
            #expect(result.closed && result.bytes.isEmpty)
            // Counted just after the close the client saw.
            #expect(await eventually { metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "peer_not_allowed")]) == 1 })
        }
    }
}
