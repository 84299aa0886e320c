import Foundation
import HandoffTestSupport
import Testing

@testable import HandoffDaemon
@testable import HandoffRequest

@Suite struct AttachmentTests {
    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13]

    private func decode(_ json: String, dataDirectory: String? = nil) throws(HandoffRequestError) -> HandoffRequest {
        var limits = HandoffRequestLimits()
        limits.attachments.dataDirectory = dataDirectory
        return try HandoffRequest.decode(Array(json.utf8), limits: limits)
    }

    @Test func inlineImagesBecomeDataURLs() throws {
        let base64 = Data(Self.png).base64EncodedString()
        let request = try self.decode(#"{"prompt":"look","images":[{"data":"\#(base64)","media_type":"image/png"},"data:image/png;base64,\#(base64)"]}"#)
        #expect(request.imageURLs == ["data:image/png;base64,\(base64)", "data:image/png;base64,\(base64)"])
        let messages = try OpenAIDialect.messages(for: request)
        guard case .object(let last) = try #require(messages.last), case .array(let parts) = try #require(last["content"]) else {
            Issue.record("the last message has no content parts")
            return
        }
        #expect(parts.count == 3)
        #expect(parts[0] == .object(["type": .string("text"), "text": .string("look")]))
        #expect(parts[1] == .object(["type": .string("image_url"), "image_url": .object(["url": .string("data:image/png;base64,\(base64)")])]))
    }

    @Test(arguments: [
        #"{"images":[{"data":"iVBORw0KGgo=","media_type":"image/tiff"}]}"#,
        #"{"images":[{"data":"%%%","media_type":"image/png"}]}"#,
        #"{"images":[{"data":"aGVsbG8=","media_type":"image/png"}]}"#,
        #"{"images":["https://example.com/cat.png"]}"#,
        #"{"images":[42]}"#,
    ])
    func invalidImagesAreRefused(json: String) {
        #expect(throws: HandoffRequestError.self) { _ = try self.decode(json) }
    }

    @Test func attachmentsAreReadFromTheDataDirectoryAndDeleted() async throws {
        try await withTemporaryDirectory { directory in
            let file = directory + "/notes.txt"
            try "remember this".write(toFile: file, atomically: true, encoding: .utf8)
            let request = try self.decode(#"{"prompt":"summarise","attachments":[{"path":"notes.txt"}]}"#, dataDirectory: directory)
            let part = try Attachments.load(request.attachments[0], limits: AttachmentLimits(dataDirectory: directory), field: "attachments[0]")
            #expect(part == .text("Attachment notes.txt:\nremember this"))
            #expect(!FileManager.default.fileExists(atPath: file))
        }
    }

    @Test func attachmentsCannotEscapeTheDataDirectory() async throws {
        try await withTemporaryDirectory { directory in
            try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
            try "secret".write(toFile: directory + "/outside.txt", atomically: true, encoding: .utf8)
            try FileManager.default.createSymbolicLink(atPath: directory + "/data/link.txt", withDestinationPath: directory + "/outside.txt")
            let limits = AttachmentLimits(dataDirectory: directory + "/data")
            for path in ["../outside.txt", "link.txt", "/etc/passwd", "missing.txt"] {
                #expect(throws: HandoffRequestError.self) {
                    _ = try Attachments.load(AttachmentReference(path: path), limits: limits, field: "attachments[0]")
                }
            }
            #expect(FileManager.default.fileExists(atPath: directory + "/outside.txt"))
        }
    }

    @Test func attachmentsOverTheSizeCapAreRefused() async throws {
        try await withTemporaryDirectory { directory in
            try String(repeating: "x", count: 2000).write(toFile: directory + "/big.txt", atomically: true, encoding: .utf8)
            let limits = AttachmentLimits(dataDirectory: directory, maxBytes: 1000)
            let error = #expect(throws: HandoffRequestError.self) {
                _ = try Attachments.load(AttachmentReference(path: "big.txt"), limits: limits, field: "attachments[0]")
            }
            #expect(error?.reason == .tooLarge)
        }
    }

    @Test func withoutADataDirectoryAttachmentsAreRefused() {
        #expect(throws: HandoffRequestError.self) {
            _ = try Attachments.load(AttachmentReference(path: "a.txt"), limits: AttachmentLimits(), field: "attachments[0]")
        }
    }

    /// A file swapped for a symlink to a secret, over and over, while handoffs read it: the
    /// secret never comes out, and nothing blocks (a FIFO, a directory) or leaks.
    @Test func swappingTheFileForASymlinkNeverReadsTheSecret() async throws {
        try await withTemporaryDirectory { directory in
            let data = directory + "/data"
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            // A directory symlink out of the data directory, to walk through.
            try FileManager.default.createSymbolicLink(atPath: data + "/sub", withDestinationPath: directory)
            try "TOP-SECRET".write(toFile: directory + "/secret.txt", atomically: true, encoding: .utf8)
            let limits = AttachmentLimits(dataDirectory: data)
            let stop = ManagedFlag()
            let swapper = Thread {
                var round = 0
                while !stop.isSet {
                    round += 1
                    // Each step replaces the name atomically (rename), as an attacker would.
                    let regular = data + "/r\(round)"
                    let link = data + "/l\(round)"
                    _ = "harmless".withCString { text in
                        let fd = open(regular, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
                        defer { close(fd) }
                        return write(fd, text, 8)
                    }
                    rename(regular, data + "/a.txt")
                    symlink(directory + "/secret.txt", link)
                    rename(link, data + "/a.txt")
                }
            }
            swapper.start()
            defer { stop.set() }
            var read = 0
            for _ in 0..<3000 {
                for path in ["a.txt", "sub/secret.txt"] {
                    if case .text(let text) = try? Attachments.load(AttachmentReference(path: path), limits: limits, field: "attachments[0]") {
                        #expect(!text.contains("TOP-SECRET"))
                        read += 1
                    }
                }
            }
            stop.set()
            #expect(read > 0)  // the race was really run: some reads found the regular file
        }
    }
}

/// A flag one thread sets and another polls.
private final class ManagedFlag: @unchecked Sendable {
    // @unchecked Sendable: guarded by the lock.
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { self.lock.withLock { self.value } }
    func set() { self.lock.withLock { self.value = true } }
}
