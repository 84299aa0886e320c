import HandoffHTTP2
import HandoffTestSupport
import NIOCore
import Testing

/// Frames come out whole and in order however the bytes were cut by the reads.
@Suite struct HTTP2FrameReaderTests {
    private func frames() -> ByteBuffer {
        var bytes = ByteBuffer()
        bytes.writeHTTP2Settings([(HTTP2SettingID.maxConcurrentStreams, 7)])
        bytes.writeHTTP2Data(streamID: 1, ByteBuffer(string: "hello"), endStream: false)
        bytes.writeHTTP2Data(streamID: 3, ByteBuffer(), endStream: true)
        bytes.writeHTTP2Ping(42, ack: true)
        bytes.writeHTTP2Data(streamID: 0x7fff_ffff, ByteBuffer(repeating: 0x61, count: 1000), endStream: false)
        return bytes
    }

    private func read(_ reader: inout HTTP2FrameReader) throws -> [String] {
        var seen: [String] = []
        while let frame = try reader.next() {
            seen.append("\(frame.type)/\(frame.flags)/\(frame.streamID)/\(frame.payload.readableBytes)/\(String(buffer: frame.payload).prefix(5))")
        }
        return seen
    }

    /// The TLS layer reads into one buffer it reuses: once its frames are out, the reader holds
    /// no reference to it, so the next read writes in place instead of copying the buffer. A
    /// frame left unfinished is kept as a copy of its own bytes.
    @Test func theReaderLetsGoOfAReadOnceItsFramesAreOut() throws {
        for partial in [false, true] {
            var read = ByteBuffer()
            read.reserveCapacity(4096)
            read.writeImmutableBuffer(self.frames())
            if partial { read.writeBytes([0, 0, 5, 0, 0]) }  // the start of a frame header
            let storage = read.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
            var reader = HTTP2FrameReader()
            reader.append(read)
            #expect(try self.read(&reader).count == 5)
            #expect(reader.bufferedBytes == (partial ? 5 : 0))
            read.clear()
            read.writeString("the next read")
            #expect(read.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } == storage, "the reader still held the read (partial: \(partial))")
        }
    }

    @Test func everySplitPointGivesTheSameFrames() throws {
        let all = self.frames()
        var whole = HTTP2FrameReader()
        whole.append(all)
        let expected = try self.read(&whole)
        #expect(expected.count == 5)
        #expect(expected[1] == "0/0/1/5/hello")
        #expect(expected[4].hasPrefix("0/0/2147483647/1000/"))
        #expect(whole.bufferedBytes == 0)
        for cut in 1..<all.readableBytes {
            var reader = HTTP2FrameReader()
            var seen: [String] = []
            reader.append(all.getSlice(at: 0, length: cut)!)
            seen += try self.read(&reader)
            reader.append(all.getSlice(at: cut, length: all.readableBytes - cut)!)
            seen += try self.read(&reader)
            #expect(seen == expected, "cut at \(cut)")
        }
    }

    @Test func anyCutIntoThreeReadsGivesTheSameFrames() throws {
        let all = self.frames()
        var whole = HTTP2FrameReader()
        whole.append(all)
        let expected = try self.read(&whole)
        var rng = SplitMix64(seed: 7)
        for _ in 0..<300 {
            let a = rng.next(all.readableBytes)
            let b = a + rng.next(all.readableBytes - a + 1)
            var reader = HTTP2FrameReader()
            var seen: [String] = []
            for (start, end) in [(0, a), (a, b), (b, all.readableBytes)] {
                reader.append(all.getSlice(at: start, length: end - start)!)
                // Sometimes the reader is not drained between reads.
                if rng.next(3) != 0 { seen += try self.read(&reader) }
            }
            seen += try self.read(&reader)
            #expect(seen == expected, "cuts at \(a) and \(b)")
            #expect(reader.bufferedBytes == 0)
        }
    }

    @Test func aFrameAboveTheLimitIsAFrameSizeError() throws {
        var bytes = ByteBuffer()
        bytes.writeHTTP2Data(streamID: 1, ByteBuffer(repeating: 0, count: http2DefaultMaxFrameSize + 1), endStream: false)
        var reader = HTTP2FrameReader()
        // The header alone is enough to refuse it.
        reader.append(bytes.getSlice(at: 0, length: 9)!)
        let error = #expect(throws: HTTP2ConnectionError.self) { try reader.next() }
        #expect(error?.code == .frameSizeError)
        var exact = HTTP2FrameReader()
        var fits = ByteBuffer()
        fits.writeHTTP2Data(streamID: 1, ByteBuffer(repeating: 0, count: http2DefaultMaxFrameSize), endStream: false)
        exact.append(fits)
        #expect(try exact.next()?.payload.readableBytes == http2DefaultMaxFrameSize)
    }
}
