import HandoffDaemon
import Testing

/// The reload's order of events, without processes: hand over only to a successor that accepts.
@Suite struct ReloadStateMachineTests {
    @Test func aReadySuccessorTakesOver() {
        var machine = ReloadStateMachine()
        #expect(machine.reloadRequested() == .startSuccessor)
        #expect(machine.successorStarted(pid: 42) == ReloadStateMachine.Action.none)
        #expect(!machine.hasHandedOver)
        #expect(machine.successorReady() == .handOver(successor: 42))
        #expect(machine.hasHandedOver)
        // After the hand-over this process only drains: no second reload, no extra stop action.
        #expect(machine.reloadRequested() == .ignoreStopping)
        #expect(machine.stopRequested() == ReloadStateMachine.Action.none)
    }

    @Test func aFailedSuccessorLeavesThisProcessServingAndAbleToReloadAgain() {
        var machine = ReloadStateMachine()
        _ = machine.reloadRequested()
        _ = machine.successorStarted(pid: 7)
        #expect(machine.successorFailed(reason: "exited with status 1") == .keepServing(reason: "exited with status 1"))
        #expect(machine.successorReady() == ReloadStateMachine.Action.none)
        #expect(machine.reloadRequested() == .startSuccessor)
    }

    @Test func aSuccessorThatCannotStartLeavesThisProcessServing() {
        var machine = ReloadStateMachine()
        _ = machine.reloadRequested()
        #expect(machine.successorFailed(reason: "posix_spawn: ENOENT") == .keepServing(reason: "posix_spawn: ENOENT"))
        #expect(!machine.hasHandedOver)
    }

    @Test func aSecondReloadDuringOneIsIgnored() {
        var machine = ReloadStateMachine()
        _ = machine.reloadRequested()
        #expect(machine.reloadRequested() == .ignoreReloadInProgress)
        _ = machine.successorStarted(pid: 9)
        #expect(machine.reloadRequested() == .ignoreReloadInProgress)
    }

    @Test func stoppingDuringAReloadStopsTheSuccessorToo() {
        var machine = ReloadStateMachine()
        _ = machine.reloadRequested()
        _ = machine.successorStarted(pid: 11)
        #expect(machine.stopRequested() == .stop(successorToStop: 11))
        #expect(machine.successorReady() == ReloadStateMachine.Action.none)
        #expect(machine.reloadRequested() == .ignoreStopping)
    }

    @Test func aSuccessorStartedAfterTheStopIsStoppedAtOnce() {
        var machine = ReloadStateMachine()
        _ = machine.reloadRequested()
        #expect(machine.stopRequested() == .stop(successorToStop: nil))
        #expect(machine.successorStarted(pid: 12) == .stop(successorToStop: 12))
    }
}
