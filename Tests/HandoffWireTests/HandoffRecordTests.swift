import Foundation
import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Real SEQPACKET sockets and real descriptors: what the receiver and the inspection make of
/// every well-formed and malformed record.
@Suite struct HandoffRecordTests {
    /// Sends one record through a real listener and returns the receiver's outcome.
    private func roundTrip(
        payload: [UInt8],
        descriptors: [CInt],
        nulForEmpty: Bool = true,
        maximumPayloadBytes: Int = 1024
    ) async throws -> HandoffReceiver.Outcome {
        try await withTemporaryUnixSocketPath { path in
            let listener = try SeqpacketListener.bind(path: path)
            defer { listener.close() }
            try FakeApache.handOff(to: path, payload: payload, descriptors: descriptors, nulForEmpty: nulForEmpty)
            let connection = try #require(try listener.accept())
            defer { connection.closeIfOpen() }
            return try HandoffReceiver(maximumPayloadBytes: maximumPayloadBytes).receive(from: connection.rawValue)
        }
    }

    private func record(_ outcome: HandoffReceiver.Outcome) throws -> ReceivedHandoff {
        guard case .record(let record) = outcome else {
            Issue.record("expected a record, got \(outcome)")
            throw CancellationError()
        }
        return record
    }

    @Test func wellFormedHandoffPassesTheClientAndTrimmedPayload() async throws {
        let (client, server) = try FakeApache.tcpConnection()
        defer { client.closeIfOpen() }
        let received = try self.record(try await self.roundTrip(payload: Array(#"{"a":1}"#.utf8) + [0, 0], descriptors: [server.rawValue]))
        server.closeIfOpen()
        #expect(received.descriptors.count == 1)
        guard case .accepted(let passed, let payload) = HandoffInspection.inspect(received) else {
            Issue.record("not accepted")
            return
        }
        #expect(payload == Array(#"{"a":1}"#.utf8))
        // The passed descriptor is the same connection: what we write, the client reads.
        _ = try Array("ping".utf8).withUnsafeBytes { try Syscall.send(passed.rawValue, $0) }
        passed.closeIfOpen()
        let (bytes, closed) = FakeApache.readUntilClosed(client.rawValue, timeoutMilliseconds: 2000)
        #expect(bytes == Array("ping".utf8))
        #expect(closed)
    }

    @Test func lonelyNULMeansNoData() async throws {
        let (client, server) = try FakeApache.tcpConnection()
        defer { client.closeIfOpen() }
        let received = try self.record(try await self.roundTrip(payload: [], descriptors: [server.rawValue]))
        server.closeIfOpen()
        #expect(received.payload == [0])
        guard case .accepted(let passed, let payload) = HandoffInspection.inspect(received) else {
            Issue.record("not accepted")
            return
        }
        #expect(payload.isEmpty)
        passed.closeIfOpen()
    }

    @Test func emptyPayloadWithADescriptorIsStillARecord() async throws {
        let (client, server) = try FakeApache.tcpConnection()
        defer { client.closeIfOpen() }
        let received = try self.record(try await self.roundTrip(payload: [], descriptors: [server.rawValue], nulForEmpty: false))
        server.closeIfOpen()
        #expect(received.payload.isEmpty)
        guard case .accepted(let passed, let payload) = HandoffInspection.inspect(received) else {
            Issue.record("not accepted")
            return
        }
        #expect(payload.isEmpty)
        passed.closeIfOpen()
    }

    @Test func missingDescriptorIsDropped() async throws {
        let received = try self.record(try await self.roundTrip(payload: Array("{}".utf8), descriptors: []))
        guard case .dropped(let reason) = HandoffInspection.inspect(received) else {
            Issue.record("not dropped")
            return
        }
        #expect(reason == .missingDescriptor)
    }

    @Test func extraDescriptorsAreClosedAndTheClientIsAnswered() async throws {
        let (client, server) = try FakeApache.tcpConnection()
        defer { client.closeIfOpen() }
        let (extraClient, extraServer) = try FakeApache.tcpConnection()
        defer { extraClient.closeIfOpen() }
        let received = try self.record(
            try await self.roundTrip(payload: Array("{}".utf8), descriptors: [server.rawValue, extraServer.rawValue])
        )
        server.closeIfOpen()
        extraServer.closeIfOpen()
        #expect(received.descriptors.count == 2)
        guard case .answer(let passed, let reason) = HandoffInspection.inspect(received) else {
            Issue.record("not answered")
            return
        }
        #expect(reason == .extraDescriptors)
        // The extra connection was closed: its peer sees end of stream at once.
        #expect(FakeApache.readUntilClosed(extraClient.rawValue, timeoutMilliseconds: 2000).closed)
        passed.closeIfOpen()
    }

    @Test func pipeInsteadOfSocketIsDroppedAndClosed() async throws {
        var ends: [CInt] = [-1, -1]
        #expect(pipe(&ends) == 0)
        let reader = OwnedDescriptor(taking: ends[0])
        let writer = OwnedDescriptor(taking: ends[1])
        defer { reader.closeIfOpen() }
        let received = try self.record(try await self.roundTrip(payload: Array("{}".utf8), descriptors: [writer.rawValue]))
        writer.closeIfOpen()
        guard case .dropped(let reason) = HandoffInspection.inspect(received) else {
            Issue.record("not dropped")
            return
        }
        #expect(reason == .invalidDescriptor)
        // Every write end is closed now, so the reader sees end of file.
        var byte: UInt8 = 0
        #expect(read(reader.rawValue, &byte, 1) == 0)
    }

    @Test func listeningSocketIsDropped() async throws {
        try await withTemporaryDirectory { directory in
            let other = try SeqpacketListener.bind(path: directory + "/other.sock")
            defer { other.close() }
            let received = try self.record(try await self.roundTrip(payload: Array("{}".utf8), descriptors: [other.rawDescriptor]))
            guard case .dropped(let reason) = HandoffInspection.inspect(received) else {
                Issue.record("not dropped")
                return
            }
            #expect(reason == .invalidDescriptor)
        }
    }

    @Test func oversizedPayloadIsFlaggedAndAnswered() async throws {
        let (client, server) = try FakeApache.tcpConnection()
        defer { client.closeIfOpen() }
        let received = try self.record(
            try await self.roundTrip(payload: Array(repeating: UInt8(ascii: "x"), count: 2000), descriptors: [server.rawValue], maximumPayloadBytes: 1024)
        )
        server.closeIfOpen()
        #expect(received.payloadTruncated)
        #expect(received.payload.count == 1024)
        guard case .answer(let passed, let reason) = HandoffInspection.inspect(received) else {
            Issue.record("not answered")
            return
        }
        #expect(reason == .payloadTooLarge)
        passed.closeIfOpen()
    }

    @Test func peerThatClosesWithoutSendingIsEndOfStream() async throws {
        try await withTemporaryUnixSocketPath { path in
            let listener = try SeqpacketListener.bind(path: path)
            defer { listener.close() }
            let sender = try #require(try HandoffSender.connect(to: path))
            sender.closeIfOpen()
            let connection = try #require(try listener.accept())
            defer { connection.closeIfOpen() }
            guard case .endOfStream = try HandoffReceiver(maximumPayloadBytes: 64).receive(from: connection.rawValue) else {
                Issue.record("expected end of stream")
                return
            }
        }
    }

    @Test func silentPeerWouldBlock() async throws {
        try await withTemporaryUnixSocketPath { path in
            let listener = try SeqpacketListener.bind(path: path)
            defer { listener.close() }
            let sender = try #require(try HandoffSender.connect(to: path))
            defer { sender.closeIfOpen() }
            let connection = try #require(try listener.accept())
            defer { connection.closeIfOpen() }
            guard case .wouldBlock = try HandoffReceiver(maximumPayloadBytes: 64).receive(from: connection.rawValue) else {
                Issue.record("expected would-block")
                return
            }
        }
    }

    @Test func fullBacklogIsReportedAsWouldBlock() async throws {
        try await withTemporaryUnixSocketPath { path in
            let listener = try SeqpacketListener.bind(path: path, backlog: 1)
            defer { listener.close() }
            var held: [OwnedDescriptor] = []
            defer { held.forEach { $0.closeIfOpen() } }
            var sawFull = false
            for _ in 0..<16 {
                guard let connection = try HandoffSender.connect(to: path) else {
                    sawFull = true
                    break
                }
                held.append(connection)
            }
            #expect(sawFull)
        }
    }
}
