/// One inbound HTTP/2 flow-control window (a stream's or the connection's) as its reader sees
/// it: bytes consumed since the last WINDOW_UPDATE, given back once half the window is used —
/// but only while the reader reads, so a paused reader stops the sender at the window's end.
/// Pure.
public struct HTTP2InboundWindow: Equatable, Sendable {
    /// The window's size, in bytes.
    public let size: Int
    /// Bytes received and not yet given back.
    public private(set) var unacknowledged = 0
    /// Whether the reader takes more (a paused stream does not).
    public private(set) var reading = true

    public init(size: Int) {
        self.size = size
    }

    /// `bytes` (flow-controlled length: data and padding) arrived. Returns the WINDOW_UPDATE
    /// increment to send now, if any.
    public mutating func received(_ bytes: Int) -> Int? {
        self.unacknowledged += bytes
        return self.update()
    }

    /// Whether `bytes` more would overrun the window the sender was given.
    public func wouldOverflow(_ bytes: Int) -> Bool {
        self.unacknowledged + bytes > self.size
    }

    /// The reader paused or resumed. Returns the increment to send now, if any.
    public mutating func setReading(_ reading: Bool) -> Int? {
        self.reading = reading
        return self.update()
    }

    private mutating func update() -> Int? {
        guard self.reading, self.unacknowledged > 0, self.unacknowledged >= self.size / 2 else { return nil }
        defer { self.unacknowledged = 0 }
        return self.unacknowledged
    }
}
