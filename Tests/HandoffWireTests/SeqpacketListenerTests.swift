import Foundation
import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import Testing

@Suite struct SeqpacketListenerTests {
    @Test func bindsWithModeAndUnlinksOnlyItsOwnPath() async throws {
        try await withTemporaryUnixSocketPath { path in
            let listener = try SeqpacketListener.bind(path: path, mode: 0o600)
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            #expect(attributes[.type] as? FileAttributeType == .typeSocket)
            #expect(listener.unlinkPathIfOwned())
            #expect(!FileManager.default.fileExists(atPath: path))
            listener.close()
        }
    }

    @Test func refusesToReplaceALiveSocket() async throws {
        try await withTemporaryUnixSocketPath { path in
            let live = try SeqpacketListener.bind(path: path)
            defer { live.close() }
            #expect(throws: HandoffWireError.socketInUse(path)) { _ = try SeqpacketListener.bind(path: path) }
            #expect(FileManager.default.fileExists(atPath: path))
        }
    }

    @Test func replacesAStaleSocket() async throws {
        try await withTemporaryUnixSocketPath { path in
            let old = try SeqpacketListener.bind(path: path)
            old.close()  // crashed instance: the file stays, nobody listens
            #expect(FileManager.default.fileExists(atPath: path))
            let new = try SeqpacketListener.bind(path: path)
            defer { new.close() }
            let connection = try HandoffSender.connect(to: path)
            #expect(connection != nil)
            connection?.closeIfOpen()
        }
    }

    @Test func refusesAPathThatIsNotASocket() async throws {
        try await withTemporaryUnixSocketPath { path in
            _ = FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8))
            #expect(throws: HandoffWireError.pathNotSocket(path)) { _ = try SeqpacketListener.bind(path: path) }
            #expect(FileManager.default.contents(atPath: path) == Data("keep me".utf8))
        }
    }

    @Test func doesNotUnlinkAPathAnotherInstanceNowOwns() async throws {
        try await withTemporaryUnixSocketPath { path in
            let first = try SeqpacketListener.bind(path: path)
            first.close()
            // Change times tick coarsely (a few ms); a real restart takes far longer than that.
            try await Task.sleep(for: .milliseconds(20))
            let second = try SeqpacketListener.bind(path: path)
            defer { second.close() }
            #expect(!first.unlinkPathIfOwned())
            #expect(FileManager.default.fileExists(atPath: path))
        }
    }

    @Test func rejectsOverlongPaths() {
        let path = "/tmp/" + String(repeating: "x", count: 120)
        #expect(throws: HandoffWireError.pathTooLong(path)) { _ = try SeqpacketListener.bind(path: path) }
    }
}
