import Testing

@testable import HandoffDaemon

@Suite struct StreamStateMachineTests {
    private let failure = ErrorResponse(status: .badGateway, error: "upstream_failed", message: "no")
    private let shutdown = ErrorResponse(status: .serviceUnavailable, error: "shutting_down", message: "bye", retryAfter: .seconds(1))

    @Test func completeStream() {
        var machine = StreamStateMachine()
        #expect(machine.sourceResponded() == .writeHead)
        #expect(machine.sourceProducedEvent() == .writeEvent)
        #expect(machine.sourceProducedEvent() == .writeEvent)
        #expect(machine.sourceFinished() == .writeFinal(.done, cancelSource: false))
        #expect(machine.sourceProducedEvent() == .none)
        #expect(machine.finalWriteCompleted() == .shutdownOutput)
        #expect(machine.state == .lingering)
        #expect(machine.connectionClosed() == .close(cancelSource: false))
        #expect(machine.outcome == .completed)
        #expect(machine.connectionClosed() == .none)
    }

    @Test func eventsBeforeTheHeadAreIgnored() {
        var machine = StreamStateMachine()
        #expect(machine.sourceProducedEvent() == .none)
        #expect(machine.sourceFinished() == .none)
    }

    @Test func failureBeforeTheHeadIsAnErrorResponse() {
        var machine = StreamStateMachine()
        #expect(machine.sourceFailed(response: self.failure, message: "m", reason: "r") == .writeFinal(.errorResponse(self.failure), cancelSource: false))
        #expect(machine.outcome == .upstreamFailed)
        #expect(machine.sourceResponded() == .none)
    }

    @Test func failureMidStreamIsAnErrorEventWithoutDone() {
        var machine = StreamStateMachine()
        _ = machine.sourceResponded()
        #expect(
            machine.sourceFailed(response: self.failure, message: "upstream reset", reason: "upstream_reset")
                == .writeFinal(.errorEvent(message: "upstream reset", reason: "upstream_reset"), cancelSource: false)
        )
        #expect(machine.sourceFinished() == .none)
        #expect(machine.outcome == .failedMidStream)
    }

    @Test func rejectionOnlyBeforeAnythingWasWritten() {
        var machine = StreamStateMachine()
        #expect(machine.rejected(self.shutdown) == .writeFinal(.errorResponse(self.shutdown), cancelSource: false))
        #expect(machine.outcome == .rejected)
        var streaming = StreamStateMachine()
        _ = streaming.sourceResponded()
        #expect(streaming.rejected(self.shutdown) == .none)
    }

    @Test func clientLeavingMidStreamCancelsTheSource() {
        var machine = StreamStateMachine()
        _ = machine.sourceResponded()
        #expect(machine.connectionClosed() == .close(cancelSource: true))
        #expect(machine.outcome == .clientDisconnected)
        #expect(machine.sourceProducedEvent() == .none)
        #expect(machine.finalWriteCompleted() == .none)
    }

    @Test func clientLeavingBeforeTheHeadCancelsTheSource() {
        var machine = StreamStateMachine()
        #expect(machine.connectionClosed() == .close(cancelSource: true))
        #expect(machine.outcome == .clientDisconnected)
    }

    @Test func writeTimeoutClosesAndCancels() {
        var machine = StreamStateMachine()
        _ = machine.sourceResponded()
        #expect(machine.writeTimedOut() == .close(cancelSource: true))
        #expect(machine.outcome == .writeTimeout)
    }

    @Test func writeTimeoutWhileFlushingTheEnd() {
        var machine = StreamStateMachine()
        _ = machine.sourceResponded()
        _ = machine.sourceFinished()
        #expect(machine.writeTimedOut() == .close(cancelSource: false))
        #expect(machine.outcome == .writeTimeout)
    }

    @Test func shutdownDeadline() {
        var streaming = StreamStateMachine()
        _ = streaming.sourceResponded()
        #expect(
            streaming.shutdownDeadlinePassed(response: self.shutdown)
                == .writeFinal(.errorEvent(message: "the server is shutting down", reason: "shutdown"), cancelSource: true)
        )
        #expect(streaming.outcome == .shutdown)
        var waiting = StreamStateMachine()
        #expect(waiting.shutdownDeadlinePassed(response: self.shutdown) == .writeFinal(.errorResponse(self.shutdown), cancelSource: true))
        var finishing = StreamStateMachine()
        _ = finishing.sourceResponded()
        _ = finishing.sourceFinished()
        #expect(finishing.shutdownDeadlinePassed(response: self.shutdown) == .none)
    }

    @Test func lingerTimeoutCloses() {
        var machine = StreamStateMachine()
        _ = machine.rejected(self.shutdown)
        #expect(machine.lingerTimedOut() == .none)
        #expect(machine.finalWriteCompleted() == .shutdownOutput)
        #expect(machine.lingerTimedOut() == .close(cancelSource: false))
        #expect(machine.state == .closed)
    }
}
