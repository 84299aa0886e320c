import Foundation
import Glibc
@testable import HandoffDaemon
import Testing

/// The access log's writer thread batches: lines recorded one at a time, as streams end, are
/// written together, and the thread wakes at its interval rather than once per line.
@Suite struct AccessLogWriterTests {
    @Test func linesDoNotWakeTheWriterOneByOne() throws {
        var ends: [CInt] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]) }
        let log = AccessLog(descriptor: ends[1])
        log.start()
        let writer = try #require(Self.thread(named: "handoffd-log"))
        let before = try Self.voluntarySwitches(writer)
        let lines = 200
        for index in 0..<lines {
            log.record("stream n=\(index)")
            usleep(1_000)  // time enough for a woken writer to run between two lines
        }
        let woken = try Self.voluntarySwitches(writer) - before
        log.stop()
        close(ends[1])

        var written = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(ends[0], &chunk, chunk.count)
            if count <= 0 { break }
            written += chunk[0..<count]
        }
        #expect(written.filter { $0 == 0x0A }.count == lines)
        // ~200 ms of lines at a 50 ms interval: a handful of wake-ups, not one per line.
        #expect(woken < lines / 5, "the writer thread slept and woke \(woken) times for \(lines) lines")
    }

    /// The id of this process's thread called `name` (as the kernel shortens it), once it runs.
    static func thread(named name: String) -> String? {
        for _ in 0..<100 {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            if let id = tasks.first(where: { (try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8))?.hasPrefix(name) == true }) {
                return id
            }
            usleep(10_000)
        }
        return nil
    }

    static func voluntarySwitches(_ thread: String) throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/task/\(thread)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") })
        return try #require(Int(line.split(separator: "\t").last!.trimmingCharacters(in: .whitespaces)))
    }
}
