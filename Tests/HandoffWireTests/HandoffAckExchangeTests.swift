import HandoffWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The sender's side of the acknowledged handoff, without I/O: every observation in every state.
@Suite struct HandoffAckExchangeTests {
    private func run(_ events: [HandoffAckExchange.Event]) -> [HandoffAckExchange.Action] {
        var exchange = HandoffAckExchange()
        return events.map { exchange.observe($0) }
    }

    @Test func ackInTimeCommits() {
        #expect(self.run([.received(HandoffAck.acknowledged)]) == [.finish(.committed)])
    }

    @Test func nakMeansTheDaemonWillNotAnswer() {
        #expect(self.run([.received(HandoffAck.refused)]) == [.finish(.refusedByDaemon)])
    }

    @Test func cleanCloseWithoutAByteIsAnOriginalDaemonThatTookTheClient() {
        #expect(self.run([.endOfStream]) == [.finish(.committedToLegacyDaemon)])
    }

    @Test func resetMeansTheDaemonDiedWithTheRecordUnread() {
        #expect(self.run([.failed]) == [.finish(.notHandedOff)])
    }

    @Test func anUnknownByteIsNotTakenForAnAck() {
        #expect(self.run([.received(0x41)]) == [.finish(.notHandedOff)])
    }

    @Test func silenceShutsDownAndALateAckStillCommits() {
        #expect(self.run([.nothingYet, .received(HandoffAck.acknowledged)]) == [.shutDownAndLookOnceMore, .finish(.committed)])
    }

    @Test(arguments: [
        HandoffAckExchange.Event.nothingYet, .endOfStream, .failed, .received(HandoffAck.refused), .received(0),
    ])
    func onTheLastLookAnythingButTheAckIsNotHandedOff(last: HandoffAckExchange.Event) {
        #expect(self.run([.nothingYet, last]) == [.shutDownAndLookOnceMore, .finish(.notHandedOff)])
    }

    @Test func daemonRepliesOnlyWhenAsked() throws {
        #expect(HandoffAck.reply(wantsAck: false, disposition: .dropped(.missingDescriptor)) == HandoffAck.Reply.none)
        #expect(HandoffAck.reply(wantsAck: true, disposition: .dropped(.invalidDescriptor)) == .refuse)
        let (a, b) = try Syscall.socketpair(domain: AF_UNIX, type: CInt(SOCK_STREAM.rawValue), nonBlocking: true)
        let first = OwnedDescriptor(taking: a)
        let second = OwnedDescriptor(taking: b)
        #expect(HandoffAck.reply(wantsAck: true, disposition: .answer(client: first, rejection: .payloadTooLarge)) == .acknowledgeThenServe)
        #expect(HandoffAck.reply(wantsAck: true, disposition: .accepted(client: second, payload: [])) == .acknowledgeThenServe)
        first.closeIfOpen()
        second.closeIfOpen()
    }
}
