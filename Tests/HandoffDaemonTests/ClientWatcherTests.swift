@testable import HandoffDaemon
import HandoffTestSupport
import HandoffWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct ClientWatcherTests {
    /// Under load the watcher batches its wake-ups as the loops do: 20 clients that close
    /// 10 ms apart (about 200 ms in all) wake a watcher with a 300 ms window a few times, each
    /// wake seeing every close that came meanwhile; without batching each close wakes it.
    /// Every close is seen either way.
    @Test(arguments: [true, false])
    func closesThatComeTogetherWakeTheWatcherOnce(batched: Bool) async throws {
        let (wakes, span) = try await self.closeClients(20, apart: .milliseconds(10), batching: batched ? LoopBatching(window: .milliseconds(300)) : nil)
        if batched {
            // One wake per window at most, after the first two (an idle watcher answers at once).
            let most = 2 + Int((span / .milliseconds(300)).rounded(.up))
            #expect(wakes <= most, "\(wakes) wakes for 20 closes over \(span)")
        } else {
            #expect(wakes >= 6, "\(wakes) wakes for 20 closes over \(span)")
        }
    }

    /// `count` client connections on one loop whose peers close `gap` apart (on a thread of
    /// their own): the watcher's wakes until every close was seen, and how long the closes took.
    private func closeClients(_ count: Int, apart gap: Duration, batching: LoopBatching?) async throws -> (wakes: Int, span: Duration) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let table = ClientTable(eventLoop: loop, index: 0)
        let watcher = try ClientWatcher(tables: [table], batching: batching, logger: Logger(label: "test"))
        watcher.start()
        let recorder = CloseRecorder()
        var peers: [CInt] = []
        for _ in 0..<count {
            let (ours, theirs) = try Syscall.socketpair(domain: AF_UNIX, type: CInt(SOCK_STREAM.rawValue), nonBlocking: false)
            peers.append(theirs)
            try await loop.submit {
                let connection = try ClientConnection(fd: ours, table: table, watcher: watcher)
                connection.setDelegate(recorder)
            }.get()
        }
        let wakesBefore = watcher.wakes.load(ordering: .relaxed)
        let closing = peers
        let span = try await onThread { () -> Duration in
            let started = ContinuousClock.now
            for (index, peer) in closing.enumerated() {
                if index > 0 { usleep(UInt32(gap.components.attoseconds / 1_000_000_000_000)) }
                close(peer)
            }
            return ContinuousClock.now - started
        }
        #expect(await eventually(within: 5000) { recorder.closed.withLockedValue { $0 } == count })
        let wakes = watcher.wakes.load(ordering: .relaxed) - wakesBefore
        watcher.stop()
        try await group.shutdownGracefully()
        return (wakes, span)
    }

    private final class CloseRecorder: ClientConnectionDelegate, Sendable {
        let closed = NIOLockedValueBox(0)
        func connectionSentWaitingBytes() {}
        func connectionClosed() { self.closed.withLockedValue { $0 += 1 } }
    }
}
