import HandoffClientKit
import HandoffDaemon
import HandoffTestSupport
import HandoffWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's half of the acknowledged handoff: it acknowledges what it will answer, refuses
/// what it cannot, and never writes to a client whose sender already gave up.
@Suite struct DaemonAckTests {
    @Test func acknowledgedHandoffStreamsToTheClient() async throws {
        try await withDaemon { daemon, _ in
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            let (path, fd) = (daemon.socketPath, server.rawValue)
            let outcome = try await offThePool {
                try FakeApache.handOff(to: path, payload: Array(#"{"prompt":"hi"}"#.utf8), descriptors: [fd], ackTimeoutMilliseconds: 2000)
            }
            server.closeIfOpen()
            #expect(outcome == .committed)
            let (bytes, closed) = try await FakeApache.response(from: client.rawValue, timeoutMilliseconds: 5000)
            let response = try #require(ReceivedResponse(bytes))
            #expect(closed)
            #expect(response.statusLine == "HTTP/1.1 200 OK")
            #expect(response.body.hasSuffix("data: [DONE]\n\n"))
        }
    }

    /// A malformed record whose client the daemon holds is still acknowledged: the daemon
    /// answers it (here 400), so the sender must not.
    @Test func aRecordTheDaemonAnswersWithAnErrorIsAcknowledged() async throws {
        try await withDaemon { daemon, _ in
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            let (path, fd) = (daemon.socketPath, server.rawValue)
            let outcome = try await offThePool {
                try FakeApache.handOff(to: path, payload: Array("{not json".utf8), descriptors: [fd], ackTimeoutMilliseconds: 2000)
            }
            server.closeIfOpen()
            #expect(outcome == .committed)
            let (bytes, _) = try await FakeApache.response(from: client.rawValue, timeoutMilliseconds: 5000)
            #expect(ReceivedResponse(bytes)?.status == 400)
        }
    }

    @Test func aRecordWithoutAClientIsRefused() async throws {
        try await withDaemon { daemon, metrics in
            let path = daemon.socketPath
            let outcome = try await offThePool {
                try FakeApache.handOff(to: path, payload: Array("{}".utf8), descriptors: [], ackTimeoutMilliseconds: 2000)
            }
            #expect(outcome == .refusedByDaemon)
            #expect(metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "missing_fd")]) == 1)
        }
    }

    /// The sender shut the connection down before the daemon read the record (as the module
    /// does when its wait runs out): the daemon closes the client without a byte.
    @Test func aClientWhoseSenderGaveUpIsClosedUnwritten() async throws {
        try await withDaemon { daemon, metrics in
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            let connection = try #require(try HandoffSender.connect(to: daemon.socketPath, requestingAck: true))
            // Give up before the record is even sent, then send it: the daemon may read it
            // only after the shutdown, so its ack must fail.
            try Syscall.shutdown(connection.rawValue, how: CInt(SHUT_RD))
            #expect(try HandoffSender.send(on: connection.rawValue, payload: Array(#"{"prompt":"hi"}"#.utf8), descriptors: [server.rawValue]))
            connection.closeIfOpen()
            server.closeIfOpen()
            let (bytes, closed) = try await FakeApache.response(from: client.rawValue, timeoutMilliseconds: 5000)
            #expect(closed)
            #expect(bytes.isEmpty)
            #expect(await eventually { metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "abandoned")]) == 1 })
            #expect(await eventually { daemon.heldClientDescriptors == 0 })
        }
    }
}
