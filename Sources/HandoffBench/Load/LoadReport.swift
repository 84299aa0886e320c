public import Foundation

extension LoadCoordinator.Report {
    /// Daemon RSS per stream held, (peak − idle) / peak concurrent streams, in KiB.
    public var daemonKiBPerStream: Double? {
        guard let idle = self.daemonIdleRSSKiB, let peak = self.daemonPeakRSSKiB, self.result.peakConcurrent > 0 else { return nil }
        return Double(peak - idle) / Double(self.result.peakConcurrent)
    }

    /// Completed streams per second of wall time.
    public var completedPerSecond: Double {
        self.result.elapsedSeconds > 0 ? Double(self.result.completed) / self.result.elapsedSeconds : 0
    }

    /// A short human summary.
    public var text: String {
        var lines: [String] = []
        let r = self.result
        lines.append("streams: started \(r.started), completed \(r.completed), failed \(r.failed), peak concurrent \(r.peakConcurrent)")
        if !r.failures.isEmpty {
            lines.append("failures: " + r.failures.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
        lines.append(String(format: "elapsed %.1f s, %.0f completed/s, %d bytes, backlog retries %d", r.elapsedSeconds, self.completedPerSecond, r.bytes, r.backlogRetries))
        lines.append("latency (ms)         p50      p90      p99    p99.9      max")
        for name in LoadResult.latencyNames {
            guard let histogram = r.latencies[name], histogram.count > 0 else { continue }
            lines.append(
                String(
                    format: "  %@ %8.3f %8.3f %8.3f %8.3f %8.3f",
                    name.padding(toLength: 14, withPad: " ", startingAt: 0) as NSString,
                    histogram.milliseconds(atPercentile: 50),
                    histogram.milliseconds(atPercentile: 90),
                    histogram.milliseconds(atPercentile: 99),
                    histogram.milliseconds(atPercentile: 99.9),
                    histogram.maximumMilliseconds
                )
            )
        }
        if let idle = self.daemonIdleRSSKiB, let peak = self.daemonPeakRSSKiB {
            let perStream = self.daemonKiBPerStream.map { String(format: "%.2f KiB/stream", $0) } ?? "-"
            let cpu = self.daemonSamples.map(\.cpuPercent).max() ?? 0
            lines.append(String(format: "daemon: idle %d KiB, peak %d KiB, (peak-idle)/peak-concurrent = %@, peak CPU %.0f%%", idle, peak, perStream as NSString, cpu))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A Markdown section for reports.
    public func markdown(title: String) -> String {
        let r = self.result
        var out = "### \(title)\n\n"
        out += "| streams | completed | failed | peak concurrent | elapsed | completed/s |\n|---|---|---|---|---|---|\n"
        out += String(format: "| %d | %d | %d | %d | %.1f s | %.0f |\n\n", r.started, r.completed, r.failed, r.peakConcurrent, r.elapsedSeconds, self.completedPerSecond)
        if !r.failures.isEmpty {
            out += "Failures: " + r.failures.sorted { $0.key < $1.key }.map { "`\($0.key)` \($0.value)" }.joined(separator: ", ") + "\n\n"
        }
        out += "| latency (ms) | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|\n"
        for name in LoadResult.latencyNames {
            guard let h = r.latencies[name], h.count > 0 else { continue }
            out += String(
                format: "| %@ | %.3f | %.3f | %.3f | %.3f | %.3f |\n",
                name as NSString,
                h.milliseconds(atPercentile: 50), h.milliseconds(atPercentile: 90), h.milliseconds(atPercentile: 99),
                h.milliseconds(atPercentile: 99.9), h.maximumMilliseconds
            )
        }
        if let idle = self.daemonIdleRSSKiB, let peak = self.daemonPeakRSSKiB {
            out += String(format: "\nDaemon RSS: idle %d KiB, peak %d KiB", idle, peak)
            if let perStream = self.daemonKiBPerStream { out += String(format: ", **%.2f KiB per stream** ((peak − idle) / %d)", perStream, r.peakConcurrent) }
            out += String(format: "; peak CPU %.0f%% of one core.\n", self.daemonSamples.map(\.cpuPercent).max() ?? 0)
            if !self.daemonSamples.isEmpty {
                out += "\n| t (s) | RSS (KiB) | CPU % | open fds |\n|---|---|---|---|\n"
                for sample in self.daemonSamples {
                    out += String(format: "| %.0f | %d | %.0f | %d |\n", sample.elapsedSeconds, sample.rssKiB, sample.cpuPercent, sample.openFiles)
                }
            }
        }
        return out + "\n"
    }

    /// The report as pretty JSON (histograms as `[value µs, count]` pairs, plus summaries).
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var object = try JSONSerialization.jsonObject(with: try encoder.encode(self)) as! [String: Any]
        object["latency_summary_ms"] = self.result.latencies.mapValues(\.summary)
        object["daemon_kib_per_stream"] = self.daemonKiBPerStream ?? NSNull()
        object["completed_per_second"] = self.completedPerSecond
        object["machine"] = ["cores": ProcessInfo.processInfo.activeProcessorCount, "memory_gib": ProcessInfo.processInfo.physicalMemory >> 30, "kernel": ProcessInfo.processInfo.operatingSystemVersionString]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
