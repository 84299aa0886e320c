import Foundation

/// Runs `body` with a fresh directory under `/tmp` (short, so socket paths fit in
/// `sockaddr_un`), removed afterwards with everything in it.
public func withTemporaryDirectory<R>(_ body: (String) async throws -> R) async throws -> R {
    let path = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Runs `body` with a socket path in a fresh temporary directory.
public func withTemporaryUnixSocketPath<R>(_ body: (String) async throws -> R) async throws -> R {
    try await withTemporaryDirectory { directory in try await body(directory + "/handoff.sock") }
}

/// Creates a fresh directory under `/tmp` and returns its path.
public func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/hot.XXXXXX".utf8CString)
    guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw CocoaError(.fileWriteUnknown)
    }
    return String(cString: result)
}
