import Foundation

/// Runs a load in one process or spread over several (one process may hold only 20 000
/// descriptors here), shows live progress, samples the daemon, and merges the results.
public struct LoadCoordinator: Sendable {
    public var configuration: LoadConfiguration
    public var processes: Int
    /// The daemon to sample (RSS, CPU, open files), if known.
    public var daemonPID: Int32?
    /// Draw a live progress line on stderr.
    public var liveProgress: Bool

    public init(configuration: LoadConfiguration, processes: Int, daemonPID: Int32?, liveProgress: Bool) {
        self.configuration = configuration
        self.processes = processes
        self.daemonPID = daemonPID
        self.liveProgress = liveProgress
    }

    /// The whole run's report.
    public struct Report: Sendable, Codable {
        public var configuration: LoadConfiguration
        public var processes: Int
        public var result: LoadResult
        public var daemonSamples: [ProcessSampler.Sample]
        /// Daemon RSS before the load, KiB.
        public var daemonIdleRSSKiB: Int?
        /// Highest daemon RSS during the load, KiB.
        public var daemonPeakRSSKiB: Int?
        /// Per-process progress summed, once a second.
        public var timeline: [LoadProgress]
    }

    public func run() throws -> Report {
        let idle = self.daemonPID.flatMap(ProcessSampler.familyResidentKiB(of:))
        let sampler = self.daemonPID.map(ProcessSampler.init(pid:))
        sampler?.start()
        var timeline: [LoadProgress] = []
        var result: LoadResult
        if self.processes <= 1 {
            let worker = try LoadWorker(configuration: self.configuration)
            result = worker.run { progress in
                timeline.append(progress)
                self.show(progress)
            }
        } else {
            (result, timeline) = try self.runChildren()
        }
        result.peakConcurrent = max(result.peakConcurrent, timeline.map(\.active).max() ?? 0)
        if self.liveProgress { FileHandle.standardError.write(Data("\n".utf8)) }
        let samples = sampler?.stop() ?? []
        return Report(
            configuration: self.configuration,
            processes: self.processes,
            result: result,
            daemonSamples: samples,
            daemonIdleRSSKiB: idle,
            daemonPeakRSSKiB: samples.map(\.rssKiB).max(),
            timeline: timeline
        )
    }

    private func show(_ progress: LoadProgress) {
        guard self.liveProgress else { return }
        let line = String(
            format: "\r%6.1fs  active %6d  started %7d  completed %7d  failed %5d",
            progress.elapsedSeconds, progress.active, progress.started, progress.completed, progress.failed
        )
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Spawns `processes` copies of this executable as workers; each prints JSON lines
    /// (`{"progress":…}` once a second, `{"result":…}` at the end) on stdout.
    private func runChildren() throws -> (LoadResult, [LoadProgress]) {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let encoder = JSONEncoder()
        var children: [(Process, Pipe)] = []
        for index in 0..<self.processes {
            let share = self.configuration.forWorker(index, of: self.processes)
            let process = Process()
            process.executableURL = executable
            process.arguments = ["worker", String(data: try encoder.encode(share), encoding: .utf8)!]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            children.append((process, pipe))
        }
        let state = ChildState(count: self.processes)
        let group = DispatchGroup()
        for (index, (_, pipe)) in children.enumerated() {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                let decoder = JSONDecoder()
                var pending = Data()
                let handle = pipe.fileHandleForReading
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    pending.append(chunk)
                    while let newline = pending.firstIndex(of: 0x0A) {
                        let line = pending[pending.startIndex..<newline]
                        pending = Data(pending[pending.index(after: newline)...])
                        if let message = try? decoder.decode(WorkerMessage.self, from: line) {
                            state.receive(message, from: index)
                        }
                    }
                }
            }
        }
        // Sum the children's progress once a second.
        var timeline: [LoadProgress] = []
        while group.wait(timeout: .now() + 1) == .timedOut {
            let sum = state.progressSum()
            timeline.append(sum)
            self.show(sum)
        }
        for (process, _) in children { process.waitUntilExit() }
        let results = state.results()
        guard results.count == self.processes else {
            throw WorkerError(message: "\(self.processes - results.count) worker process(es) failed")
        }
        var merged = LoadResult()
        for result in results { merged.merge(result) }
        timeline.append(state.progressSum())
        return (merged, timeline)
    }

    struct WorkerError: Error, CustomStringConvertible {
        var message: String
        var description: String { self.message }
    }
}

/// What a worker process prints, one JSON object per line.
public struct WorkerMessage: Codable, Sendable {
    public var progress: LoadProgress?
    public var result: LoadResult?

    public init(progress: LoadProgress? = nil, result: LoadResult? = nil) {
        self.progress = progress
        self.result = result
    }
}

/// The children's latest progress and final results, shared by the reader threads.
private final class ChildState: @unchecked Sendable {
    // @unchecked Sendable: every access holds `lock`.
    private let lock = NSLock()
    private var latest: [LoadProgress]
    private var finals: [LoadResult?]

    init(count: Int) {
        self.latest = Array(repeating: LoadProgress(), count: count)
        self.finals = Array(repeating: nil, count: count)
    }

    func receive(_ message: WorkerMessage, from index: Int) {
        self.lock.withLock {
            if let progress = message.progress { self.latest[index] = progress }
            if let result = message.result { self.finals[index] = result }
        }
    }

    func progressSum() -> LoadProgress {
        self.lock.withLock {
            self.latest.reduce(into: LoadProgress()) { sum, item in
                sum.elapsedSeconds = max(sum.elapsedSeconds, item.elapsedSeconds)
                sum.active += item.active
                sum.started += item.started
                sum.completed += item.completed
                sum.failed += item.failed
            }
        }
    }

    func results() -> [LoadResult] {
        self.lock.withLock { self.finals.compactMap { $0 } }
    }
}
