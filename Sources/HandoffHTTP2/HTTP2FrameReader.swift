public import NIOCore

/// Cuts the bytes of a connection into frames. Whole frames in one read are handed out as
/// slices of it; only a frame split across reads is copied, once.
/// Pure.
public struct HTTP2FrameReader {
    private var buffer = ByteBuffer()
    /// The largest payload accepted (our SETTINGS_MAX_FRAME_SIZE).
    public var maxFrameSize: Int

    public init(maxFrameSize: Int = http2DefaultMaxFrameSize) {
        self.maxFrameSize = maxFrameSize
    }

    /// Bytes read from the connection.
    public mutating func append(_ bytes: ByteBuffer) {
        if self.buffer.readableBytes == 0 {
            self.buffer = bytes
        } else {
            // The rest of a split frame: a fresh buffer, so no slice already handed out is
            // copied on write.
            var joined = ByteBufferAllocator().buffer(capacity: self.buffer.readableBytes + bytes.readableBytes)
            joined.writeImmutableBuffer(self.buffer)
            joined.writeImmutableBuffer(bytes)
            self.buffer = joined
        }
    }

    /// The next whole frame, or `nil` until more bytes arrive.
    public mutating func next() throws(HTTP2ConnectionError) -> HTTP2RawFrame? {
        let start = self.buffer.readerIndex
        guard self.buffer.readableBytes >= 9,
            let high = self.buffer.getInteger(at: start, as: UInt16.self),
            let low = self.buffer.getInteger(at: start + 2, as: UInt8.self),
            let type = self.buffer.getInteger(at: start + 3, as: UInt8.self),
            let flags = self.buffer.getInteger(at: start + 4, as: UInt8.self),
            let stream = self.buffer.getInteger(at: start + 5, as: UInt32.self)
        else { return nil }
        let length = Int(high) << 8 | Int(low)
        guard length <= self.maxFrameSize else {
            throw HTTP2ConnectionError(.frameSizeError, "a frame of \(length) bytes (the limit is \(self.maxFrameSize))")
        }
        guard self.buffer.readableBytes >= 9 + length else { return nil }
        self.buffer.moveReaderIndex(forwardBy: 9)
        let payload = self.buffer.readSlice(length: length)!
        if self.buffer.readableBytes == 0 { self.buffer = ByteBuffer() }
        return HTTP2RawFrame(type: type, flags: flags, streamID: stream & 0x7fff_ffff, payload: payload)
    }

    /// Bytes held for a frame not yet whole.
    public var bufferedBytes: Int { self.buffer.readableBytes }
}
