import Testing

import HandoffHTTP2

@Suite struct HTTP2InboundWindowTests {
    @Test func givesBackOnceHalfTheWindowIsUsed() {
        var window = HTTP2InboundWindow(size: 1000)
        #expect(window.received(300) == nil)
        #expect(window.received(199) == nil)
        #expect(window.received(1) == 500)
        #expect(window.unacknowledged == 0)
        #expect(window.received(700) == 700)
    }

    @Test func aPausedReaderGivesNothingBackUntilItResumes() {
        var window = HTTP2InboundWindow(size: 1000)
        #expect(window.setReading(false) == nil)
        #expect(window.received(600) == nil)
        #expect(window.received(400) == nil)  // the sender is now at the window's end
        #expect(window.setReading(true) == 1000)
        #expect(window.setReading(true) == nil)
    }

    @Test func resumingWithLittleConsumedSendsNothing() {
        var window = HTTP2InboundWindow(size: 1000)
        _ = window.setReading(false)
        #expect(window.received(100) == nil)
        #expect(window.setReading(true) == nil)  // 900 left: the sender is not blocked
        #expect(window.received(400) == 500)
    }
}
