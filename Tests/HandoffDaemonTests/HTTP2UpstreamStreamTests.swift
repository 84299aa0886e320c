import NIOCore
import NIOHPACK
import Testing

@testable import HandoffDaemon

/// What a paused ``HTTP2UpstreamStream`` does with the frames that still arrive (up to the
/// window's end): it holds them, and delivers them in order, end included, when reading resumes.
@Suite struct HTTP2UpstreamStreamPauseTests {
    final class Recorder: UpstreamResponseDelegate {
        var received: [String] = []
        var finished = false
        var failed: UpstreamError?
        func upstreamResponded(status: Int, headers: [(String, String)]) {}
        func upstreamReceived(_ body: ByteBuffer) { self.received.append(String(buffer: body)) }
        func upstreamFinished() { self.finished = true }
        func upstreamFailed(_ error: UpstreamError) { self.failed = error }
    }

    private func stream(_ recorder: Recorder) -> HTTP2UpstreamStream {
        let stream = HTTP2UpstreamStream(request: UpstreamRequest(path: "/", headers: [], body: ByteBuffer()), delegate: recorder)
        stream.receivedHeaders([":status": "200"], endStream: false)
        return stream
    }

    @Test func framesArrivingWhilePausedAreHeldAndDeliveredInOrder() {
        let recorder = Recorder()
        let stream = self.stream(recorder)
        stream.receivedData(ByteBuffer(string: "a"), endStream: false)
        stream.setReading(false)
        stream.receivedData(ByteBuffer(string: "b"), endStream: false)
        stream.receivedData(ByteBuffer(string: "c"), endStream: true)
        #expect(recorder.received == ["a"])
        #expect(!recorder.finished)
        // The stream closes cleanly while its owner is paused: nothing is lost.
        #expect(stream.closed(reason: nil, refused: false) == false)
        #expect(recorder.failed == nil)
        stream.setReading(true)
        #expect(recorder.received == ["a", "b", "c"])
        #expect(recorder.finished)
    }

    @Test func anOwnerThatPausesAgainWhileCatchingUpGetsTheRestLater() {
        final class Pauser: UpstreamResponseDelegate {
            var received: [String] = []
            var finished = false
            weak var stream: HTTP2UpstreamStream?
            func upstreamResponded(status: Int, headers: [(String, String)]) {}
            func upstreamReceived(_ body: ByteBuffer) {
                self.received.append(String(buffer: body))
                self.stream?.setReading(false)  // full again after every piece
            }
            func upstreamFinished() { self.finished = true }
            func upstreamFailed(_ error: UpstreamError) {}
        }
        let pauser = Pauser()
        let stream = HTTP2UpstreamStream(request: UpstreamRequest(path: "/", headers: [], body: ByteBuffer()), delegate: pauser)
        pauser.stream = stream
        stream.receivedHeaders([":status": "200"], endStream: false)
        stream.receivedData(ByteBuffer(string: "1"), endStream: false)  // delivered, then paused
        stream.receivedData(ByteBuffer(string: "2"), endStream: false)
        stream.receivedData(ByteBuffer(string: "3"), endStream: true)
        #expect(pauser.received == ["1"])
        stream.setReading(true)
        #expect(pauser.received == ["1", "2"])
        stream.setReading(true)
        #expect(pauser.received == ["1", "2", "3"])
        #expect(!pauser.finished)
        stream.setReading(true)
        #expect(pauser.finished)
    }

    @Test func aResetWhilePausedDropsWhatWasHeldAndFails() {
        let recorder = Recorder()
        let stream = self.stream(recorder)
        stream.setReading(false)
        stream.receivedData(ByteBuffer(string: "x"), endStream: false)
        _ = stream.closed(reason: .internalError, refused: false)
        #expect(recorder.failed != nil)
        stream.setReading(true)
        #expect(recorder.received.isEmpty)
    }
}

/// The request header block as a strict server sees it.
@Suite struct HTTP2RequestHeaderTests {
    @Test func everyBlockStartsWithATableSizeUpdateAndCarriesTheRequest() throws {
        let endpoint = try UpstreamEndpoint(url: "https://api.example.com/v1")
        let template = try #require(HTTP2UpstreamStream.HeaderTemplate(endpoint))
        // 0x20: a dynamic table size update to 0 (RFC 7541 §6.3), which a server that lowered
        // SETTINGS_HEADER_TABLE_SIZE requires before anything else.
        #expect(template.beforePath.getInteger(at: template.beforePath.readerIndex, as: UInt8.self) == 0x20)
        let request = UpstreamRequest(path: "/v1/chat/completions", headers: [("authorization", "Bearer k"), ("x-request-id", " r-1\t")], body: ByteBuffer(string: "{}"))
        var block = try #require(HTTP2UpstreamStream.headerBlock(for: request, template: template))
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: 0, maxHeaderListSize: 16_384)
        let fields = try decoder.decodeHeaders(from: &block).map { "\($0.name): \($0.value)" }
        #expect(fields == [
            ":method: POST", ":scheme: https", ":authority: api.example.com", ":path: /v1/chat/completions",
            "content-type: application/json", "accept: text/event-stream", "content-length: 2",
            "authorization: Bearer k", "x-request-id: r-1",
        ])
        // A name HTTP/2 cannot carry fails the request before it is sent.
        let upper = UpstreamRequest(path: "/", headers: [("X-Upper", "v")], body: ByteBuffer())
        #expect(HTTP2UpstreamStream.headerBlock(for: upper, template: template) == nil)
    }
}
