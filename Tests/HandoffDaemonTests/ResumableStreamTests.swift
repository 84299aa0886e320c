import HandoffRedis
import NIOCore
import Testing

@testable import HandoffDaemon
@testable import HandoffRequest

/// The pure parts of resumable streams and channels: the handoff's fields, the state
/// machine's detached life, recorded entries and channel framing.
@Suite struct ResumableStreamTests {
    private func decode(_ json: String) throws(HandoffRequestError) -> HandoffRequest {
        try HandoffRequest.decode(Array(json.utf8))
    }

    @Test func decodesTheResumptionFields() throws {
        let started = try self.decode(#"{"prompt":"p","stream_id":"chat-1.a:b_C","resumable":true,"completion":false}"#)
        #expect(started.streamID == "chat-1.a:b_C" && started.resumable && !started.resume && !started.completion)
        let resumed = try self.decode(#"{"stream_id":"s","resume":true,"last_event_id":"17"}"#)
        #expect(resumed.resume && resumed.lastEventID == 17)
        #expect(try self.decode(#"{"stream_id":"s","resume":true,"last_event_id":23}"#).lastEventID == 23)
        #expect(try self.decode(#"{"stream_id":"s","resume":true,"last_event_id":""}"#).lastEventID == 0)
        #expect(try self.decode(#"{"backend":"channel","channel":"room:1"}"#).channel == "room:1")
        #expect(try self.decode(#"{"prompt":"p"}"#).completion)
    }

    @Test(arguments: [
        (#"{"resumable":true}"#, "resumable"),
        (#"{"stream_id":"a b","resumable":true}"#, "stream_id"),
        (#"{"stream_id":"","resumable":true}"#, "stream_id"),
        (#"{"stream_id":"\#(String(repeating: "x", count: 129))"}"#, "stream_id"),
        (#"{"stream_id":"s","resume":true,"last_event_id":"-1"}"#, "last_event_id"),
        (#"{"stream_id":"s","resume":true,"last_event_id":"1e3"}"#, "last_event_id"),
        (#"{"stream_id":"s","resume":true,"last_event_id":true}"#, "last_event_id"),
        (#"{"stream_id":"s","resume":true,"resumable":true}"#, "resume"),
        (#"{"resumable":"yes","stream_id":"s"}"#, "resumable"),
        (#"{"channel":""}"#, "channel"),
    ])
    func refusesBadResumptionFields(json: String, field: String) {
        #expect {
            try self.decode(json)
        } throws: { error in
            "\(error)".contains(field)
        }
    }

    @Test func aResumableStreamDetachesWhenItsClientLeaves() {
        var machine = StreamStateMachine()
        machine.keepsSourceWithoutClient = true
        _ = machine.sourceResponded()
        #expect(machine.connectionClosed() == .detach)
        #expect(machine.state == .detached && machine.outcome == .clientDisconnected)
        #expect(machine.sourceProducedEvent() == .writeEvent)
        #expect(machine.connectionClosed() == .none)
        #expect(machine.sourceFinished() == .recordFinal(.done, cancelSource: false))
        #expect(machine.state == .closed)
        #expect(machine.sourceProducedEvent() == .none)
    }

    @Test func aDetachedStreamRecordsItsFailureAndTheShutdown() {
        var failing = StreamStateMachine()
        failing.keepsSourceWithoutClient = true
        #expect(failing.connectionClosed() == .detach)  // before the head, too
        #expect(failing.sourceResponded() == .none)
        #expect(
            failing.sourceFailed(response: ErrorResponse(status: .badGateway, error: "e", message: "m"), message: "m", reason: "r")
                == .recordFinal(.errorEvent(message: "m", reason: "r"), cancelSource: false)
        )
        var stalled = StreamStateMachine()
        stalled.keepsSourceWithoutClient = true
        _ = stalled.sourceResponded()
        #expect(stalled.writeTimedOut() == .detach)
        #expect(stalled.outcome == .writeTimeout)
        #expect(
            stalled.shutdownDeadlinePassed(response: ErrorResponse(status: .serviceUnavailable, error: "s", message: "m"))
                == .recordFinal(.errorEvent(message: "the server is shutting down", reason: "shutdown"), cancelSource: true)
        )
    }

    @Test func aPlainStreamStillClosesAndCancels() {
        var machine = StreamStateMachine()
        _ = machine.sourceResponded()
        #expect(machine.connectionClosed() == .close(cancelSource: true))
    }

    @Test func aFollowerEndsWithTheRecordedLastEvent() {
        var machine = StreamStateMachine()
        _ = machine.sourceResponded()
        let last = ByteBuffer(string: "id: 9\ndata: [DONE]\n\n")
        #expect(machine.sourceFinished(final: .recorded(last)) == .writeFinal(.recorded(last), cancelSource: false))
    }

    @Test func readsRecordedEntriesInBothProtocols() {
        let resp2 = RESPValue.array([
            .bulkString(ByteBuffer(string: "0-7")),
            .array([.bulkString(ByteBuffer(string: "e")), .bulkString(ByteBuffer(string: "id: 7\ndata: x\n\n")), .bulkString(ByteBuffer(string: "end")), .bulkString(ByteBuffer(string: "1"))]),
        ])
        #expect(RecordedEvent(resp2) == RecordedEvent(id: 7, bytes: ByteBuffer(string: "id: 7\ndata: x\n\n"), isFinal: true))
        let resp3 = RESPValue.array([
            .bulkString(ByteBuffer(string: "0-8")),
            .map([(.bulkString(ByteBuffer(string: "e")), .bulkString(ByteBuffer(string: "b")))]),
        ])
        #expect(RecordedEvent(resp3) == RecordedEvent(id: 8, bytes: ByteBuffer(string: "b"), isFinal: false))
        #expect(RecordedEvent(.array([.bulkString(ByteBuffer(string: "1700000000000-0")), .array([])])) == nil)
        #expect(RecordedEvent(.array([.bulkString(ByteBuffer(string: "0-3")), .array([])])) == nil)
    }

    @Test func channelMessagesAreFramedByTheirEnvelope() {
        func envelope(_ text: String) -> ChannelEnvelope { ChannelEnvelope(ByteBuffer(string: text)) }
        #expect(envelope("hello") == ChannelEnvelope(data: "hello"))
        #expect(envelope(#"{"content":"x"}"#) == ChannelEnvelope(data: #"{"content":"x"}"#))
        #expect(envelope(#"{"event":"update","data":{"a":[1, 2]},"id":7}"#) == ChannelEnvelope(event: "update", data: #"{"a":[1, 2]}"#, id: "7"))
        #expect(envelope(#"{"data":"a\nb","close":true}"#) == ChannelEnvelope(data: "a\nb", close: true))
        #expect(envelope(#"{"close":true}"#) == ChannelEnvelope(data: nil, close: true))
        #expect(envelope(#"{"event":"ping"}"#) == ChannelEnvelope(event: "ping", data: ""))
        // Not an envelope after all: malformed, or a member of the wrong type → the whole text.
        #expect(envelope(#"{"close":"yes"}"#) == ChannelEnvelope(data: #"{"close":"yes"}"#))
        #expect(envelope(#"{"data":1"#) == ChannelEnvelope(data: #"{"data":1"#))

        let message = ChannelMessage(payload: ByteBuffer(string: #"{"event":"e","data":"l1\r\nl2","id":"x"}"#))
        #expect(message.eventBytes.map { String(buffer: $0) } == "event: e\ndata: l1\ndata: l2\nid: x\n\n")
        #expect(ChannelMessage(payload: ByteBuffer(string: #"{"close":true}"#)).eventBytes == nil)
    }

    @Test func keysShareTheStreamsHashTag() {
        let keys = StreamKeys(prefix: "handoff:", streamID: "a:b")
        #expect(keys.events == "handoff:{a:b}:events" && keys.meta == "handoff:{a:b}:meta" && keys.notify == "handoff:{a:b}:notify")
    }
}
