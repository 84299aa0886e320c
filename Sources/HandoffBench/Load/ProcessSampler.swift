public import Foundation

/// Samples another process's resident memory and CPU from `/proc` once a second: the daemon's
/// cost under load, measured independently of anything the daemon reports about itself. The
/// process's children count too (a supervisor with `--workers`).
public final class ProcessSampler: @unchecked Sendable {
    // @unchecked Sendable: `samples` is written by the sampling thread and read only after
    // `stop()` returned, which joins that thread through the lock.

    /// One sample.
    public struct Sample: Sendable, Codable {
        public var elapsedSeconds: Double
        /// Resident set size, KiB (`VmRSS`).
        public var rssKiB: Int
        /// CPU used since the previous sample, percent of one core.
        public var cpuPercent: Double
        /// Open descriptors.
        public var openFiles: Int
    }

    public let pid: Int32
    private let lock = NSLock()
    private var running = true
    private var samples: [Sample] = []
    private var thread: Thread?

    public init(pid: Int32) {
        self.pid = pid
    }

    /// `pid` and its direct children.
    static func family(of pid: Int32) -> [Int32] {
        var family = [pid]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let child = Int32(entry), child != pid,
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // After "pid (comm)": state, then the parent's pid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, Int32(fields[1]) == pid { family.append(child) }
        }
        return family
    }

    /// RSS of `pid` and its children, in KiB; `nil` if `pid` is gone.
    public static func familyResidentKiB(of pid: Int32) -> Int? {
        guard let own = Self.residentKiB(of: pid) else { return nil }
        return Self.family(of: pid).dropFirst().reduce(own) { $0 + (Self.residentKiB(of: $1) ?? 0) }
    }

    /// The process's current RSS in KiB, or `nil` if it is gone.
    public static func residentKiB(of pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }

    /// User + system CPU time in clock ticks.
    static func cpuTicks(of pid: Int32) -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14, stime 15 (1-based over the whole line).
        guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }

    static func openFiles(of pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    }

    /// Starts sampling every `interval`.
    public func start(interval: TimeInterval = 1.0) {
        let started = Date()
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        let thread = Thread { [self] in
            func ticks() -> Int? {
                let family = Self.family(of: self.pid)
                guard let own = Self.cpuTicks(of: self.pid) else { return nil }
                return family.dropFirst().reduce(own) { $0 + (Self.cpuTicks(of: $1) ?? 0) }
            }
            var lastTicks = ticks() ?? 0
            var lastTime = Date()
            while self.lock.withLock({ self.running }) {
                Thread.sleep(forTimeInterval: interval)
                guard let rss = Self.familyResidentKiB(of: self.pid), let ticks = ticks() else { continue }
                let now = Date()
                let cpu = Double(ticks - lastTicks) / ticksPerSecond / now.timeIntervalSince(lastTime) * 100
                lastTicks = ticks
                lastTime = now
                let files = Self.family(of: self.pid).reduce(0) { $0 + Self.openFiles(of: $1) }
                let sample = Sample(elapsedSeconds: now.timeIntervalSince(started), rssKiB: rss, cpuPercent: max(0, cpu), openFiles: files)
                self.lock.withLock { self.samples.append(sample) }
            }
        }
        thread.name = "process-sampler"
        thread.start()
        self.thread = thread
    }

    /// Stops sampling and returns the samples.
    public func stop() -> [Sample] {
        self.lock.withLock {
            self.running = false
            return self.samples
        }
    }
}
