import CoreMetrics

/// The metrics of completion callbacks.
final class CompletionMetrics: Sendable {
    enum Name {
        static let callbacks = "handoffd_callbacks_total"
        static let pending = "handoffd_callbacks_pending"

        static let all = [callbacks, pending]
    }

    /// Documents made at a stream's end.
    let submitted: Counter
    /// Documents the receiver took (`2xx`).
    let delivered: Counter
    /// Attempts that failed and were scheduled again.
    let retried: Counter
    /// Documents given up after the maximum age.
    let failed: Counter
    /// Documents another (or an earlier) daemon left in Redis and this one took over.
    let recovered: Counter
    /// Documents this process is delivering now.
    let pending: Meter

    init(factory: any MetricsFactory) {
        func counter(_ result: String) -> Counter { Counter(label: Name.callbacks, dimensions: [("result", result)], factory: factory) }
        self.submitted = counter("submitted")
        self.delivered = counter("delivered")
        self.retried = counter("retried")
        self.failed = counter("failed")
        self.recovered = counter("recovered")
        self.pending = Meter(label: Name.pending, factory: factory)
    }
}
