/// Produces one stream's content: the built-in mock, or an upstream request.
///
/// Lives on the stream's event loop and reports to its ``StreamSession``. The handler owns the
/// source; the source holds the handler `unowned` and must not call it after ``cancel()``.
protocol StreamSource: AnyObject {
    /// Begins producing. The first report may come synchronously.
    func start()
    /// Stops producing at once and frees upstream resources (an upstream request is reset).
    func cancel()
    /// The client can take more again after a pause (the handler checked writability).
    func resume()
    /// Facts for the access log.
    var summary: StreamSummary { get }
}

extension StreamSource {
    var summary: StreamSummary { StreamSummary() }
}
