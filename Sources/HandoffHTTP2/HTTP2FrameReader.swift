public import NIOCore

/// Cuts the bytes of a connection into frames. Whole frames in one read are handed out as
/// slices of it; only a frame split across reads is copied, its own bytes and no more.
/// Once a read holds no whole frame more, the reader lets go of it: the TLS layer writes each
/// read into one buffer it reuses, and a reference kept to it made the next read copy it.
/// Pure.
public struct HTTP2FrameReader {
    /// The last read's bytes not handed out yet.
    private var buffer = ByteBuffer()
    /// A frame split across reads, being put together.
    private var split = ByteBuffer()
    /// The largest payload accepted (our SETTINGS_MAX_FRAME_SIZE).
    public var maxFrameSize: Int

    public init(maxFrameSize: Int = http2DefaultMaxFrameSize) {
        self.maxFrameSize = maxFrameSize
    }

    /// Bytes read from the connection.
    public mutating func append(_ bytes: ByteBuffer) {
        self.setAsideRest()
        self.buffer = bytes
    }

    /// The next whole frame, or `nil` until more bytes arrive.
    public mutating func next() throws(HTTP2ConnectionError) -> HTTP2RawFrame? {
        if self.split.readableBytes > 0 {
            guard let frame = try self.completeSplitFrame() else {
                self.setAsideRest()
                return nil
            }
            return frame
        }
        guard let length = try self.frameLength(of: self.buffer), self.buffer.readableBytes >= 9 + length else {
            self.setAsideRest()
            return nil
        }
        return self.cut(&self.buffer, length: length)
    }

    /// Lets go of the last read: the start of a frame it did not finish is copied onto the split
    /// frame, to be completed from the next read.
    private mutating func setAsideRest() {
        if self.buffer.readableBytes > 0 {
            self.split.writeImmutableBuffer(self.buffer)
        }
        if self.buffer.capacity > 0 {
            self.buffer = ByteBuffer()
        }
    }

    /// Moves just enough of the new read into the split frame to finish it.
    private mutating func completeSplitFrame() throws(HTTP2ConnectionError) -> HTTP2RawFrame? {
        if self.split.readableBytes < 9 {
            self.take(9 - self.split.readableBytes)
            guard self.split.readableBytes == 9 else { return nil }
        }
        let length = try self.frameLength(of: self.split)!
        self.take(9 + length - self.split.readableBytes)
        guard self.split.readableBytes >= 9 + length else { return nil }
        let frame = self.cut(&self.split, length: length)
        // The frame's payload keeps the old storage; the next split frame starts afresh.
        if self.split.readableBytes == 0 { self.split = ByteBuffer() }
        return frame
    }

    /// Up to `count` bytes from the last read onto the split frame.
    private mutating func take(_ count: Int) {
        guard count > 0 else { return }  // the split bytes hold more than this frame already
        let bytes = self.buffer.readSlice(length: min(count, self.buffer.readableBytes))!
        self.split.writeImmutableBuffer(bytes)
    }

    /// The payload length a frame header at the start of `bytes` declares, once all 9 bytes are there.
    private func frameLength(of bytes: ByteBuffer) throws(HTTP2ConnectionError) -> Int? {
        let start = bytes.readerIndex
        guard bytes.readableBytes >= 9,
            let high = bytes.getInteger(at: start, as: UInt16.self),
            let low = bytes.getInteger(at: start + 2, as: UInt8.self)
        else { return nil }
        let length = Int(high) << 8 | Int(low)
        guard length <= self.maxFrameSize else {
            throw HTTP2ConnectionError(.frameSizeError, "a frame of \(length) bytes (the limit is \(self.maxFrameSize))")
        }
        return length
    }

    /// Reads the whole frame (header and `length` bytes of payload) off `bytes`.
    private func cut(_ bytes: inout ByteBuffer, length: Int) -> HTTP2RawFrame {
        let type = bytes.getInteger(at: bytes.readerIndex + 3, as: UInt8.self)!
        let flags = bytes.getInteger(at: bytes.readerIndex + 4, as: UInt8.self)!
        let stream = bytes.getInteger(at: bytes.readerIndex + 5, as: UInt32.self)!
        bytes.moveReaderIndex(forwardBy: 9)
        let payload = bytes.readSlice(length: length)!
        return HTTP2RawFrame(type: type, flags: flags, streamID: stream & 0x7fff_ffff, payload: payload)
    }

    /// Bytes held for a frame not yet whole.
    public var bufferedBytes: Int { self.buffer.readableBytes + self.split.readableBytes }
}
