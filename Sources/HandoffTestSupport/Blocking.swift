public import HandoffClientKit
import Foundation

/// Runs blocking work (a `poll`, a blocking `read`) on a thread of its own, so async tests never
/// block Swift's small cooperative pool (two threads on a two-core machine).
public func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.start()
    }
}

extension FakeApache {
    /// Async ``readUntilClosed(_:timeoutMilliseconds:)`` on its own thread.
    public static func response(from fd: CInt, timeoutMilliseconds: Int = 5000) async throws -> (bytes: [UInt8], closed: Bool) {
        try await onThread { FakeApache.readUntilClosed(fd, timeoutMilliseconds: timeoutMilliseconds) }
    }

    /// Async ``readUntil(_:from:timeoutMilliseconds:)`` on its own thread.
    public static func read(until marker: String, from fd: CInt, timeoutMilliseconds: Int = 5000) async throws -> [UInt8] {
        try await onThread { FakeApache.readUntil(marker, from: fd, timeoutMilliseconds: timeoutMilliseconds) }
    }
}
