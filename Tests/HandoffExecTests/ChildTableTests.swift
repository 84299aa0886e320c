import Testing

@testable import HandoffExec

@Suite struct ChildTableTests {
    private let start = ContinuousClock.now

    @Test func roomUntilTheLimit() {
        var table = ChildTable(limit: 2, timeout: .seconds(10), killGrace: .seconds(2))
        table.started(pid: 10, at: self.start, payloadFile: nil)
        #expect(table.hasRoom)
        table.started(pid: 11, at: self.start, payloadFile: "/tmp/p")
        #expect(!table.hasRoom)
        #expect(table.exited(pid: 11)?.payloadFile == "/tmp/p")
        #expect(table.hasRoom)
        #expect(table.exited(pid: 99) == nil)
    }

    @Test func overTimeChildrenGetSIGTERMThenSIGKILLAfterTheGrace() {
        var table = ChildTable(limit: 4, timeout: .seconds(10), killGrace: .seconds(2))
        table.started(pid: 10, at: self.start, payloadFile: nil)
        table.started(pid: 11, at: self.start + .seconds(5), payloadFile: nil)
        #expect(table.due(at: self.start + .seconds(9)) == [])
        #expect(table.nextDeadline == self.start + .seconds(10))
        #expect(table.due(at: self.start + .seconds(10)) == [.terminate(10)])
        #expect(table.due(at: self.start + .seconds(11)) == [])
        #expect(table.due(at: self.start + .seconds(12)) == [.kill(10)])
        // Not reaped yet (a process in uninterruptible sleep): SIGKILL again, every grace.
        #expect(table.due(at: self.start + .seconds(15)) == [.kill(10), .terminate(11)])
        _ = table.exited(pid: 10)
        #expect(table.due(at: self.start + .seconds(20)) == [.kill(11)])
    }

    @Test func endingAllSignalsEveryChildOnce() {
        var table = ChildTable(limit: 4, timeout: .seconds(300), killGrace: .seconds(2))
        table.started(pid: 10, at: self.start, payloadFile: nil)
        table.started(pid: 11, at: self.start, payloadFile: nil)
        #expect(table.endAll(at: self.start + .seconds(1)) == [.terminate(10), .terminate(11)])
        #expect(table.endAll(at: self.start + .seconds(1)) == [])
        #expect(table.due(at: self.start + .seconds(3)) == [.kill(10), .kill(11)])
    }
}
