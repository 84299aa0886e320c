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
    /// Hands `payload` off asking for an ack, with `server` (closed after) as the client, and
    /// returns how the exchange ended. Off the cooperative pool: the wait blocks. The wait is
    /// long (10 s) because the whole suite starts at once on 2 cores and stalls for about 2 s
    /// (a 2 s wait failed all three tests in one CI run); a healthy daemon answers in
    /// microseconds, and a missing ack still fails the test.
    private func ackedHandOff(_ daemon: HandoffDaemon, _ payload: String, server: OwnedDescriptor?) async throws -> HandoffAckExchange.Outcome? {
        let (path, descriptors) = (daemon.socketPath, server.map { [$0.rawValue] } ?? [])
        defer { server?.closeIfOpen() }
        return try await offThePool {
            try FakeApache.handOff(to: path, payload: Array(payload.utf8), descriptors: descriptors, ackTimeoutMilliseconds: 10_000)
        }
    }

    @Test func acknowledgedHandoffStreamsToTheClient() async throws {
        try await withDaemon { daemon, _ in
            let (client, server) = try FakeApache.tcpConnection()
            defer { client.closeIfOpen() }
            let outcome = try await self.ackedHandOff(daemon, #"{"prompt":"hi"}"#, server: server)
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
            let outcome = try await self.ackedHandOff(daemon, "{not json", server: server)
            #expect(outcome == .committed)
            let (bytes, _) = try await FakeApache.response(from: client.rawValue, timeoutMilliseconds: 5000)
            #expect(ReceivedResponse(bytes)?.status == 400)
        }
    }

    @Test func aRecordWithoutAClientIsRefused() async throws {
        try await withDaemon { daemon, metrics in
            let outcome = try await self.ackedHandOff(daemon, "{}", server: nil)
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

/// The acceptor's receive deadlines belong to connections, not descriptor numbers.
@Suite struct AcceptorDeadlineTests {
    /// C connects and stays silent, so its deadline heads the queue. A connects behind it and
    /// delivers; B then gets A's descriptor number and is slow to send. B must keep its own
    /// deadline rather than inherit A's stale one (which would close it before it sent).
    @Test func aReusedDescriptorNumberKeepsItsOwnDeadline() async throws {
        try await withDaemon({ $0.timeouts.handoff = .milliseconds(600) }) { daemon, metrics in
            let path = daemon.socketPath
            let (first, firstServer) = try FakeApache.tcpConnection()
            let (second, secondServer) = try FakeApache.tcpConnection()
            defer { first.closeIfOpen(); second.closeIfOpen() }
            let (a, b) = (firstServer.rawValue, secondServer.rawValue)
            let outcome = try await offThePool { () -> Bool in
                // The daemon runs in this process, so every descriptor the test opens takes a
                // number too: open B's socket first and keep A's until the end, so that the
                // daemon's accept for B reuses the number its connection from A had.
                let address = try UnixSocketAddress(path: path)
                let connectionB = OwnedDescriptor(taking: try Syscall.socket(domain: AF_UNIX, type: CInt(SOCK_SEQPACKET.rawValue)))
                defer { connectionB.closeIfOpen() }
                // C: connect at 0 ms and never send (deadline 600).
                let silent = try #require(try HandoffSender.connect(to: path))
                defer { silent.closeIfOpen() }
                usleep(50_000)
                // A: connect at 50 ms (deadline 650), deliver at 100 ms.
                let connectionA = try #require(try HandoffSender.connect(to: path))
                defer { connectionA.closeIfOpen() }
                usleep(50_000)
                _ = try HandoffSender.send(on: connectionA.rawValue, payload: Array(#"{"prompt":"a"}"#.utf8), descriptors: [a])
                // B: connect at 300 ms (deadline 900; A's stale one says 650), deliver at 750 ms.
                usleep(200_000)
                _ = try Syscall.connect(connectionB.rawValue, to: address)
                usleep(450_000)
                return (try? HandoffSender.send(on: connectionB.rawValue, payload: Array(#"{"prompt":"b"}"#.utf8), descriptors: [b])) == true
            }
            firstServer.closeIfOpen()
            secondServer.closeIfOpen()
            #expect(outcome)
            let (bytes, _) = try await FakeApache.response(from: second.rawValue, timeoutMilliseconds: 5000)
            #expect(ReceivedResponse(bytes)?.status == 200)
            // At most the silent connection timed out (under load its close may be seen first).
            #expect(metrics.counterTotal(label: "handoffd_handoff_errors_total", dimensions: [("reason", "timeout")]) <= 1)
        }
    }
}
