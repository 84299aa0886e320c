import Foundation

/// The process's open descriptors, from `/proc/self/fd`.
public enum OpenDescriptors {
    /// How many descriptors the process has open now (excluding the one used to count).
    public static func count() -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return max(0, entries.count - 1)
    }
}
