import NIOCore
import Testing

@testable import HandoffDaemon

/// An upstream HTTP/2 connection's rules, without sockets.
@Suite struct HTTP2ConnectionStateMachineTests {
    private let now = NIODeadline.now()

    private func ready(maxStreams: Int = 2, resetBudget: Int = 3) -> HTTP2ConnectionStateMachine {
        var machine = HTTP2ConnectionStateMachine(assumedStreams: 1, resetBudget: resetBudget)
        #expect(machine.settingsReceived(maxConcurrentStreams: maxStreams) == .startPingsAndOfferRoom)
        return machine
    }

    @Test func streamsAreTakenUpToTheServersLimit() {
        var machine = HTTP2ConnectionStateMachine(assumedStreams: 1, resetBudget: 3)
        #expect(!machine.canTakeStream)  // still connecting
        #expect(machine.settingsReceived(maxConcurrentStreams: 2) == .startPingsAndOfferRoom)
        machine.streamOpened()
        #expect(machine.canTakeStream)
        machine.streamOpened()
        #expect(!machine.canTakeStream)
        #expect(machine.streamEnded(resetByUs: false, now: self.now) == .offerRoom)
        #expect(machine.canTakeStream)
        // A later SETTINGS may lower the limit.
        #expect(machine.settingsReceived(maxConcurrentStreams: 1) == .offerRoom)
        #expect(!machine.canTakeStream)
    }

    @Test func goAwayLetsRunningStreamsFinishThenCloses() {
        var machine = self.ready()
        machine.streamOpened()
        machine.streamOpened()
        #expect(machine.goAwayReceived(lastStreamID: 3) == HTTP2ConnectionStateMachine.Action.none)
        #expect(!machine.canTakeStream)
        #expect(machine.lastProcessedStreamID == 3)
        #expect(machine.streamEnded(resetByUs: false, now: self.now) == HTTP2ConnectionStateMachine.Action.none)
        #expect(machine.streamEnded(resetByUs: false, now: self.now) == .close(reason: "retired"))
    }

    @Test func usedUpStreamIDsRetireTheConnectionOnceItsStreamsEnd() {
        var machine = self.ready()
        machine.streamOpened()
        #expect(machine.streamIDsExhausted() == .none)
        #expect(!machine.canTakeStream)
        #expect(machine.streamEnded(resetByUs: false, now: self.now) == .close(reason: "retired"))
        var idle = self.ready()
        #expect(idle.streamIDsExhausted() == .close(reason: "stream ids used up"))
    }

    @Test func anIdleConnectionClosesAtOnceOnGoAway() {
        var machine = self.ready()
        #expect(machine.goAwayReceived(lastStreamID: 0) == .close(reason: "GOAWAY"))
    }

    @Test func aSecondGoAwayOnlyLowersTheLastStreamID() {
        var machine = self.ready()
        machine.streamOpened()
        _ = machine.goAwayReceived(lastStreamID: 7)
        #expect(machine.goAwayReceived(lastStreamID: 5) == HTTP2ConnectionStateMachine.Action.none)
        #expect(machine.lastProcessedStreamID == 5)
    }

    @Test func onlyOurResetsSpendTheBudgetAndOldOnesExpire() {
        var machine = self.ready(maxStreams: 10, resetBudget: 3)
        for _ in 0..<5 { machine.streamOpened() }
        // The server's own error answers and refusals are not our resets.
        #expect(machine.streamEnded(resetByUs: false, now: self.now) == .offerRoom)
        #expect(machine.streamEnded(resetByUs: true, now: self.now) == .offerRoom)
        // Two resets long ago have expired by the third.
        #expect(machine.streamEnded(resetByUs: true, now: self.now) == .offerRoom)
        #expect(machine.streamEnded(resetByUs: true, now: self.now + .seconds(31)) == .offerRoom)
        #expect(machine.canTakeStream)
        machine.streamOpened()
        machine.streamOpened()
        #expect(machine.streamEnded(resetByUs: true, now: self.now + .seconds(31)) == .offerRoom)
        #expect(machine.streamEnded(resetByUs: true, now: self.now + .seconds(31)) == HTTP2ConnectionStateMachine.Action.none)
        // Three within the window: retired, and closed when the last stream ends.
        #expect(!machine.canTakeStream)
        #expect(machine.streamEnded(resetByUs: false, now: self.now + .seconds(32)) == .close(reason: "retired"))
    }

    @Test func pingsGoOutOnlyWhileStreamsRunAndAnUnansweredOneCloses() {
        var machine = self.ready()
        #expect(machine.pingTimerFired() == .reschedulePing)
        machine.streamOpened()
        #expect(machine.pingTimerFired() == .sendPingAndReschedule)
        machine.pongReceived()
        #expect(machine.pingTimerFired() == .sendPingAndReschedule)
        #expect(machine.pingTimerFired() == .close(reason: "no answer to a PING"))
    }

    @Test func closingReportsWhetherItWasStillConnecting() {
        var connecting = HTTP2ConnectionStateMachine(assumedStreams: 1, resetBudget: 3)
        #expect(connecting.closed() == true)
        #expect(connecting.closed() == nil)
        var ready = self.ready()
        #expect(ready.closed() == false)
        #expect(ready.pingTimerFired() == HTTP2ConnectionStateMachine.Action.none)
    }
}
