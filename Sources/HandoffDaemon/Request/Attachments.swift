import Foundation

/// Images and files a handoff brings for the model, turned into OpenAI content parts.
///
/// Inline `images` are base64 and validated (known type, real magic bytes, decodable, size).
/// `attachments` name files under the configured data directory: the path must stay inside it
/// after resolving symlinks, be a regular file under the size cap; the file is read once and
/// deleted. Reading happens on a thread pool, never on an event loop.
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

enum Attachments {
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
    static func load(_ reference: AttachmentReference, limits: AttachmentLimits, field: String) throws(HandoffRequestError) -> HandoffRequest.ContentPart {
        guard let directory = limits.dataDirectory else {
            throw .invalidValue(field, "this server accepts no attachments (no data directory configured)")
        }
        guard !reference.path.hasPrefix("/"), !reference.path.isEmpty, !reference.path.contains("\0") else {
            throw .invalidValue("\(field).path", "must be a relative path inside the data directory")
        }
        guard let root = Self.resolved(directory), let file = Self.resolved(directory + "/" + reference.path) else {
            throw .invalidValue("\(field).path", "does not exist")
        }
        guard file.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw .invalidValue("\(field).path", "resolves outside the data directory")
        }
        var info = stat()
        guard lstat(file, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw .invalidValue("\(field).path", "is not a regular file")
        }
        guard Int(info.st_size) <= limits.maxBytes else {
            throw .tooLarge(field, limit: limits.maxBytes)
        }
        let mediaType = reference.mediaType ?? Self.mediaType(forExtension: (file as NSString).pathExtension)
        guard let mediaType, Self.imageTypes.contains(mediaType) || Self.textTypes.contains(mediaType) else {
            throw .invalidValue("\(field).media_type", "must be an image (\(Self.imageTypes.joined(separator: ", "))) or text (\(Self.textTypes.joined(separator: ", ")))")
        }
        guard let data = FileManager.default.contents(atPath: file), data.count <= limits.maxBytes else {
            throw .invalidValue("\(field).path", "could not be read")
        }
        // Read once: the file belongs to this handoff and goes away now.
        unlink(file)
        if Self.imageTypes.contains(mediaType) {
            guard Self.magicMatches(Array(data.prefix(12)), mediaType: mediaType) else {
                throw .invalidValue(field, "is not a \(mediaType) image")
            }
            return .imageURL("data:\(mediaType);base64,\(data.base64EncodedString())")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .invalidValue(field, "is not UTF-8 text")
        }
        let name = reference.name ?? (reference.path as NSString).lastPathComponent
        return .text("Attachment \(name):\n\(text)")
    }

    static func resolved(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
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
