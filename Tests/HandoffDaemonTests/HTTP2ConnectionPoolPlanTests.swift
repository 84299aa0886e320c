@testable import HandoffDaemon
import Testing

/// When the upstream pool opens connections (a pure rule): for the streams waiting, and one
/// ahead of demand while it is in use, but never in a loop against an upstream that refuses.
@Suite struct HTTP2ConnectionPoolPlanTests {
    private func plan(waiting: Int = 0, room: Int, perConnection: Int = 100, inUse: Bool = true, keepSpare: Bool = true, open: Int = 1, limit: Int = 64) -> Int {
        HTTP2ConnectionPool.connectionsToOpen(waiting: waiting, room: room, perConnection: perConnection, inUse: inUse, keepSpare: keepSpare, open: open, limit: limit)
    }

    @Test func anIdlePoolOpensNothing() {
        #expect(self.plan(room: 0, inUse: false, open: 0) == 0)
    }

    @Test func theFirstStreamOpensOneConnection() {
        #expect(self.plan(waiting: 1, room: 0, inUse: false, open: 0) == 1)
    }

    @Test func aSpareOpensOnceLessThanAFifthIsLeft() {
        #expect(self.plan(room: 21) == 0)
        #expect(self.plan(room: 20) == 0)
        #expect(self.plan(room: 19) == 1)
        // 10 streams per connection: the spare is 2 streams.
        #expect(self.plan(room: 2, perConnection: 10) == 0)
        #expect(self.plan(room: 1, perConnection: 10) == 1)
    }

    @Test func aConnectionStillConnectingCountsAsRoom() {
        // One full connection and one connecting (counted as 100 in `room`): no third.
        #expect(self.plan(room: 100, open: 2) == 0)
    }

    @Test func aBurstOpensWhatItNeedsAtTheKnownSize() {
        // 35 waiting at 10 streams a connection, none free: 4 connections (35 + 2 spare).
        #expect(self.plan(waiting: 35, room: 0, perConnection: 10) == 4)
    }

    @Test func afterAFailedConnectOnlyDemandOpens() {
        #expect(self.plan(room: 5, keepSpare: false) == 0)
        #expect(self.plan(waiting: 3, room: 0, keepSpare: false) == 1)
    }

    @Test func theLimitHolds() {
        #expect(self.plan(waiting: 500, room: 0, open: 62, limit: 64) == 2)
        #expect(self.plan(room: 0, open: 64, limit: 64) == 0)
    }
}
