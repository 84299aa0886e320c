import Foundation
import HandoffWire

/// Images and files a handoff brings for the model, turned into OpenAI content parts.
///
/// Inline `images` are base64 and validated (known type, real magic bytes, decodable, size).
/// `attachments` name files under the configured data directory. The path is walked one
/// component at a time with `openat(2)` and `O_NOFOLLOW` from the directory, so it cannot leave
/// it (no `..`, no symlink anywhere); the open descriptor is checked with `fstat` (a regular
/// file under the size cap) and read, at most the cap; then the file is deleted. Nothing is
/// checked by name and then used by name, so swapping the file for a symlink mid-way gains
/// nothing. Reading happens on a thread pool, never on an event loop.
public struct AttachmentLimits: Sendable {
    /// Directory attachments must live in; `nil` refuses every attachment.
    public var dataDirectory: String?
    /// Largest single attachment or decoded image, in bytes. Default 20 MiB.
    public var maxBytes: Int
    /// Most images plus attachments per handoff. Default 8.
    public var maxCount: Int

    public init(dataDirectory: String? = nil, maxBytes: Int = 20 * 1024 * 1024, maxCount: Int = 8) {
        self.dataDirectory = dataDirectory
        self.maxBytes = maxBytes
        self.maxCount = maxCount
    }
}

/// An image as the handoff gave it: base64 data and its media type.
public struct InlineImage: Sendable, Equatable {
    public var mediaType: String
    public var base64: String
}

/// A file under the data directory, named by the handoff.
public struct AttachmentReference: Sendable, Equatable {
    /// Relative to the data directory.
    public var path: String
    /// Declared media type; guessed from the extension when absent.
    public var mediaType: String?
    /// Display name for text attachments.
    public var name: String?
}

/// Reading attachments and validating images (see the file header).
public enum Attachments {
    static let imageTypes = ["image/png", "image/jpeg", "image/gif", "image/webp"]
    static let textTypes = ["text/plain", "text/markdown", "text/csv", "application/json"]

    /// Validates an inline image; returns its content part URL.
    static func dataURL(for image: InlineImage, limits: AttachmentLimits, field: String) throws(HandoffRequestError) -> String {
        guard Self.imageTypes.contains(image.mediaType) else {
            throw .invalidValue("\(field).media_type", "must be one of \(Self.imageTypes.joined(separator: ", "))")
        }
        guard image.base64.utf8.count <= (limits.maxBytes / 3 + 1) * 4 else {
            throw .tooLarge(field, limit: limits.maxBytes)
        }
        guard let bytes = Data(base64Encoded: image.base64) else {
            throw .invalidValue("\(field).data", "is not valid base64")
        }
        guard Self.magicMatches(Array(bytes.prefix(12)), mediaType: image.mediaType) else {
            throw .invalidValue("\(field).data", "is not a \(image.mediaType) image")
        }
        return "data:\(image.mediaType);base64,\(image.base64)"
    }

    /// Reads (and deletes) an attachment; returns its content part. Blocking: thread pool only.
    public static func load(_ reference: AttachmentReference, limits: AttachmentLimits, field: String) throws(HandoffRequestError) -> HandoffRequest.ContentPart {
        guard let directory = limits.dataDirectory else {
            throw .invalidValue(field, "this server accepts no attachments (no data directory configured)")
        }
        let components = reference.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard !reference.path.hasPrefix("/"), !components.isEmpty, !reference.path.contains("\0"),
            !components.contains(".."), !components.contains(".")
        else {
            throw .invalidValue("\(field).path", "must be a relative path inside the data directory, without . or ..")
        }
        let mediaType = reference.mediaType ?? Self.mediaType(forExtension: (components.last! as NSString).pathExtension)
        guard let mediaType, Self.imageTypes.contains(mediaType) || Self.textTypes.contains(mediaType) else {
            throw .invalidValue("\(field).media_type", "must be an image (\(Self.imageTypes.joined(separator: ", "))) or text (\(Self.textTypes.joined(separator: ", ")))")
        }
        let data = try Self.readAndDelete(components, under: directory, maxBytes: limits.maxBytes, field: field)
        if Self.imageTypes.contains(mediaType) {
            guard Self.magicMatches(Array(data.prefix(12)), mediaType: mediaType) else {
                throw .invalidValue(field, "is not a \(mediaType) image")
            }
            return .imageURL("data:\(mediaType);base64,\(Data(data).base64EncodedString())")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw .invalidValue(field, "is not UTF-8 text")
        }
        let name = reference.name ?? components.last!
        return .text("Attachment \(name):\n\(text)")
    }

    /// Opens `components` under `directory` without following any symlink, reads the regular
    /// file there (at most `maxBytes`), and deletes it.
    private static func readAndDelete(_ components: [String], under directory: String, maxBytes: Int, field: String) throws(HandoffRequestError) -> [UInt8] {
        var parent: CInt
        do {
            parent = try Syscall.openAt(AT_FDCWD, directory, flags: O_RDONLY | O_DIRECTORY)
        } catch {
            throw .invalidValue(field, "the data directory cannot be opened")
        }
        defer { _ = try? Syscall.close(parent) }
        for component in components.dropLast() {
            let next: CInt
            do {
                next = try Syscall.openAt(parent, component, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            } catch {
                throw Self.openError(error, field: field)
            }
            _ = try? Syscall.close(parent)
            parent = next
        }
        let name = components.last!
        let file: CInt
        do {
            // O_NONBLOCK: a FIFO planted here must not hang the reading thread.
            file = try Syscall.openAt(parent, name, flags: O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        } catch {
            throw Self.openError(error, field: field)
        }
        defer { _ = try? Syscall.close(file) }
        guard let info = try? Syscall.fileStatus(file), info.isRegularFile else {
            throw .invalidValue("\(field).path", "is not a regular file")
        }
        guard info.size <= maxBytes else {
            throw .tooLarge(field, limit: maxBytes)
        }
        // Read one byte past the cap: a file that grew since fstat is refused, not cut.
        var data = [UInt8](repeating: 0, count: min(info.size, maxBytes) + 1)
        let count: Int
        do {
            count = try data.withUnsafeMutableBytes { try Syscall.readFully(file, into: $0) }
        } catch {
            throw .invalidValue("\(field).path", "could not be read")
        }
        guard count <= maxBytes else { throw .tooLarge(field, limit: maxBytes) }
        data.removeSubrange(count...)
        // Read once: the file belongs to this handoff and goes away now.
        try? Syscall.unlinkAt(parent, name)
        return data
    }

    private static func openError(_ error: any Error, field: String) -> HandoffRequestError {
        switch (error as? HandoffWireError)?.errno {
        case ENOENT: .invalidValue("\(field).path", "does not exist")
        case ELOOP, ENOTDIR: .invalidValue("\(field).path", "is or goes through a symbolic link, or is not a directory where one is needed")
        default: .invalidValue("\(field).path", "could not be opened")
        }
    }

    static func mediaType(forExtension ext: String) -> String? {
        switch ext.lowercased() {
        case "png": "image/png"
        case "jpg", "jpeg": "image/jpeg"
        case "gif": "image/gif"
        case "webp": "image/webp"
        case "txt", "log": "text/plain"
        case "md", "markdown": "text/markdown"
        case "csv": "text/csv"
        case "json": "application/json"
        default: nil
        }
    }

    static func magicMatches(_ head: [UInt8], mediaType: String) -> Bool {
        switch mediaType {
        case "image/png": head.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        case "image/jpeg": head.starts(with: [0xFF, 0xD8, 0xFF])
        case "image/gif": head.starts(with: Array("GIF87a".utf8)) || head.starts(with: Array("GIF89a".utf8))
        case "image/webp": head.count >= 12 && head.starts(with: Array("RIFF".utf8)) && Array(head[8..<12]) == Array("WEBP".utf8)
        default: false
        }
    }
}
