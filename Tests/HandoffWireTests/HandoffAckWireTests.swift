import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The acknowledged handoff over real SEQPACKET sockets: the opt-in marker, and the kernel
/// behaviour its race-freedom rests on (an ack after the sender's shutdown fails).
@Suite struct HandoffAckWireTests {
    private let payload = Array(#"{"prompt":"x"}"#.utf8)

    /// Connects (asking for an ack or not) and sends one record carrying `client`.
    private func send(to path: String, requestingAck: Bool, client: OwnedDescriptor) throws -> OwnedDescriptor {
        let connection = try #require(try HandoffSender.connect(to: path, requestingAck: requestingAck))
        #expect(try HandoffSender.send(on: connection.rawValue, payload: self.payload, descriptors: [client.rawValue]))
        return connection
    }

    /// Receives the record on the daemon's side and returns the passed client descriptor.
    private func receiveClient(on connection: OwnedDescriptor) throws -> OwnedDescriptor {
        guard case .record(let record) = try HandoffReceiver(maximumPayloadBytes: 1024).receive(from: connection.rawValue),
            case .accepted(let client, _) = HandoffInspection.inspect(record)
        else {
            Issue.record("no well-formed record arrived")
            throw CancellationError()
        }
        return client
    }

    private func sendAck(_ connection: OwnedDescriptor) -> Bool {
        ((try? withUnsafeBytes(of: HandoffAck.acknowledged) { try Syscall.send(connection.rawValue, $0) }) ?? nil) == 1
    }

    @Test func theMarkerIsSeenAtAcceptAndOnlyWhenAsked() async throws {
        try await withTemporaryUnixSocketPath { path in
            let listener = try SeqpacketListener.bind(path: path)
            defer { listener.close() }
            for asked in [true, false] {
                let (browser, server) = try FakeApache.tcpConnection()
                defer { browser.closeIfOpen(); server.closeIfOpen() }
                let sender = try self.send(to: path, requestingAck: asked, client: server)
                defer { sender.closeIfOpen() }
                let accepted = try #require(try listener.acceptConnection())
                #expect(accepted.wantsAck == asked)
                accepted.connection.closeIfOpen()
            }
        }
    }

    /// A listener with one record waiting in its backlog, sent asking for an ack with a real
    /// client connection; `body` gets the listener and the sender's end.
    private func withRecordWaiting(_ body: (SeqpacketListener, OwnedDescriptor) throws -> Void) async throws {
        try await withTemporaryUnixSocketPath { path in
            let listener = try SeqpacketListener.bind(path: path)
            defer { listener.close() }
            let (browser, server) = try FakeApache.tcpConnection()
            defer { browser.closeIfOpen(); server.closeIfOpen() }
            let sender = try self.send(to: path, requestingAck: true, client: server)
            defer { sender.closeIfOpen() }
            try body(listener, sender)
        }
    }

    /// Accepts and receives the waiting record as a daemon would; returns the connection and client.
    private func takeRecord(_ listener: SeqpacketListener) throws -> (connection: OwnedDescriptor, client: OwnedDescriptor) {
        let accepted = try #require(try listener.acceptConnection())
        return (accepted.connection, try self.receiveClient(on: accepted.connection))
    }

    @Test func anAckInTimeCommits() async throws {
        try await self.withRecordWaiting { listener, sender in
            let (connection, client) = try self.takeRecord(listener)
            #expect(self.sendAck(connection))
            connection.closeIfOpen()
            client.closeIfOpen()
            #expect(HandoffSender.awaitAck(on: sender.rawValue, timeoutMilliseconds: 2000) == .committed)
        }
    }

    /// A hung daemon: the sender gives up and shuts down; when the daemon wakes, its ack fails,
    /// so it knows to close the client without writing. Never both answer, never neither.
    @Test func anAckAfterTheSenderGaveUpFails() async throws {
        try await self.withRecordWaiting { listener, sender in
            let started = FakeApache.monotonicMilliseconds()
            #expect(HandoffSender.awaitAck(on: sender.rawValue, timeoutMilliseconds: 100) == .notHandedOff)
            #expect(FakeApache.monotonicMilliseconds() - started < 1000)
            sender.closeIfOpen()
            // The daemon wakes up: the record and its descriptor are still there to read ...
            let (connection, client) = try self.takeRecord(listener)
            // ... but the ack cannot be delivered any more.
            #expect(!self.sendAck(connection))
            connection.closeIfOpen()
            client.closeIfOpen()
        }
    }

    /// The race's other half: the ack lands just before the sender's shutdown and still counts.
    @Test func anAckQueuedBeforeTheShutdownStillCommits() async throws {
        try await self.withRecordWaiting { listener, sender in
            let (connection, client) = try self.takeRecord(listener)
            #expect(self.sendAck(connection))
            var exchange = HandoffAckExchange()
            #expect(exchange.observe(.nothingYet) == .shutDownAndLookOnceMore)
            try Syscall.shutdown(sender.rawValue, how: CInt(SHUT_RDWR))
            var byte: UInt8 = 0
            let count = try withUnsafeMutableBytes(of: &byte) { try Syscall.read(sender.rawValue, into: $0) }
            #expect(count == 1)
            #expect(exchange.observe(.received(byte)) == .finish(.committed))
            connection.closeIfOpen()
            client.closeIfOpen()
        }
    }

    @Test func anOriginalDaemonThatReadsAndClosesTookTheClient() async throws {
        try await self.withRecordWaiting { listener, sender in
            let (connection, client) = try self.takeRecord(listener)
            connection.closeIfOpen()
            client.closeIfOpen()
            #expect(HandoffSender.awaitAck(on: sender.rawValue, timeoutMilliseconds: 2000) == .committedToLegacyDaemon)
        }
    }

    /// A daemon killed with the record still in its backlog: the sender learns it at once.
    @Test func aDaemonThatDiesWithTheRecordUnreadDidNotTakeIt() async throws {
        try await self.withRecordWaiting { listener, sender in
            listener.close()
            let started = FakeApache.monotonicMilliseconds()
            #expect(HandoffSender.awaitAck(on: sender.rawValue, timeoutMilliseconds: 5000) == .notHandedOff)
            #expect(FakeApache.monotonicMilliseconds() - started < 1000)
        }
    }
}
