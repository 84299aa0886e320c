import Histogram

/// A latency distribution in microseconds (HdrHistogram, 3 significant digits), mergeable across
/// worker processes and serialisable as `[value, count]` pairs.
public struct LatencyHistogram: Sendable, Codable {
    private(set) var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)

    public init() {}

    /// Records a duration given in nanoseconds.
    mutating func record(nanoseconds: UInt64) {
        _ = self.histogram.record(max(1, nanoseconds / 1000))
    }

    mutating func merge(_ other: LatencyHistogram) {
        self.histogram.add(other.histogram)
    }

    public var count: UInt64 { self.histogram.totalCount }

    /// The value at `percentile` (0–100), in milliseconds.
    public func milliseconds(atPercentile percentile: Double) -> Double {
        guard self.count > 0 else { return 0 }
        return Double(self.histogram.valueAtPercentile(percentile)) / 1000
    }

    /// The largest value, in milliseconds.
    public var maximumMilliseconds: Double { self.count > 0 ? Double(self.histogram.max) / 1000 : 0 }

    /// p50, p90, p99, p99.9 and max, in milliseconds.
    public var summary: [String: Double] {
        [
            "p50": self.milliseconds(atPercentile: 50), "p90": self.milliseconds(atPercentile: 90),
            "p99": self.milliseconds(atPercentile: 99), "p99.9": self.milliseconds(atPercentile: 99.9),
            "max": self.maximumMilliseconds, "count": Double(self.count),
        ]
    }

    public init(from decoder: any Decoder) throws {
        let pairs = try decoder.singleValueContainer().decode([[UInt64]].self)
        for pair in pairs where pair.count == 2 {
            _ = self.histogram.record(pair[0], count: pair[1])
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var pairs: [[UInt64]] = []
        for value in self.histogram.recordedValues() {
            pairs.append([value.value, value.count])
        }
        var container = encoder.singleValueContainer()
        try container.encode(pairs)
    }
}
