/// The few responses `handoff-exec` writes itself, to a client it will not run a program for.
enum PlainResponse {
    /// `503` with `Retry-After`: every child slot is taken.
    static func busy(retryAfterSeconds: Int) -> [UInt8] {
        Self.response(status: "503 Service Unavailable", extra: "Retry-After: \(retryAfterSeconds)\r\n",
                      body: #"{"error":"over_capacity","message":"the server is at its limit of running handlers; retry shortly"}"#)
    }

    /// `500`: the program could not be started.
    static func spawnFailed() -> [UInt8] {
        Self.response(status: "500 Internal Server Error", extra: "",
                      body: #"{"error":"handler_failed","message":"the handler could not be started"}"#)
    }

    /// `413` / `400` for a record the wire layer refused with a client to answer.
    static func refused(tooLarge: Bool) -> [UInt8] {
        tooLarge
            ? Self.response(status: "413 Content Too Large", extra: "", body: #"{"error":"payload_too_large","message":"the handoff data is too large"}"#)
            : Self.response(status: "400 Bad Request", extra: "", body: #"{"error":"invalid_handoff","message":"the handoff could not be read"}"#)
    }

    private static func response(status: String, extra: String, body: String) -> [UInt8] {
        let body = body + "\n"
        return Array(("HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Cache-Control: no-store\r\n\(extra)Connection: close\r\n\r\n" + body).utf8)
    }
}
