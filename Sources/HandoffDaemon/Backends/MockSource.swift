import NIOCore
import HandoffRequest

/// The built-in `mock` backend: answers at once, then sends `messages` content events, the
/// first immediately and one every `interval` after (all at once when it is zero), then
/// finishes.
///
/// Test patterns (`test_pattern`): `echo` streams the prompt back unchanged in 4 KiB
/// pieces, so a client can check that large handoff data arrived intact.
final class MockSource: StreamSource, TimerWheelTarget {
    private unowned let session: StreamSession
    private let wheel: TimerWheel
    private let script: MockScript
    private var next = 0
    var wheelTimer = WheelTimer()
    private var paused = false
    /// When the next event is due (nil: at once).
    private var due: NIODeadline?
    private var cancelled = false

    init(session: StreamSession, wheel: TimerWheel, script: MockScript) {
        self.session = session
        self.wheel = wheel
        self.script = script
    }

    func start() {
        self.session.sourceResponded()
        self.produce()
    }

    func cancel() {
        self.cancelled = true
        self.wheelTimer.cancel(on: self.wheel)
    }

    func resume() {
        guard self.paused, !self.cancelled else { return }
        self.paused = false
        self.due = nil  // a fresh schedule: the events missed while paused do not burst out
        self.produce()
    }

    func timerFired(token: UInt32) {
        guard self.wheelTimer.fired(token), !self.cancelled else { return }
        self.produce()
    }


    private func produce() {
        guard !self.cancelled else { return }
        guard self.next < self.script.count else {
            self.cancelled = true
            self.session.sourceFinished()
            return
        }
        guard self.session.isWritable else {
            self.paused = true
            return
        }
        // Without an interval, events go back to back: all that fit under the client's
        // high-water mark leave in one write. With one, every event that is due leaves: a
        // timer that fired late (the loop rested, or was busy) does not push the rest of the
        // stream back, and the events it caught up with leave together.
        let interval = self.script.interval
        let backToBack = interval == .zero
        let now = NIODeadline.now()
        var due = self.due ?? now
        repeat {
            let content = self.script.content(at: self.next)
            self.next += 1
            due = due + interval
            self.session.sourceProducedContent(content, queued: true)
        } while (backToBack || due <= now) && self.next < self.script.count && self.session.isWritable && !self.cancelled
        guard !self.cancelled else { return }
        if self.next == self.script.count {
            self.cancelled = true
            self.session.sourceFinished()
            return
        }
        self.session.sourceSendQueued()
        guard !self.cancelled else { return }
        if !self.session.isWritable {
            self.paused = true  // resumed once the client has taken the bytes
            return
        }
        self.due = backToBack ? nil : due
        self.wheelTimer.arm(self, on: self.wheel, after: backToBack ? .zero : max(.zero, due - NIODeadline.now()))
    }
}

/// What one mock stream says, fixed when the handoff is decoded.
struct MockScript: Sendable {
    private enum Kind: Sendable {
        case messages(prompt: String, user: String)
        case echo(chunks: [String])
        case words
    }

    private let kind: Kind
    /// Content events in the stream.
    let count: Int
    /// Delay between content events.
    let interval: TimeAmount

    static let echoChunkCharacters = 4096

    init(request: HandoffRequest, configuration: DaemonConfiguration.Mock) {
        self.interval = TimeAmount(configuration.interval)
        if request.testPattern == "echo" {
            let prompt = request.prompt ?? ""
            var chunks: [String] = []
            var index = prompt.startIndex
            while index != prompt.endIndex {
                let end = prompt.index(index, offsetBy: Self.echoChunkCharacters, limitedBy: prompt.endIndex) ?? prompt.endIndex
                chunks.append(String(prompt[index..<end]))
                index = end
            }
            self.kind = .echo(chunks: chunks)
            self.count = chunks.count
        } else if configuration.text == .words {
            self.kind = .words
            self.count = configuration.messages
        } else {
            let prompt = request.prompt ?? request.lastUserText ?? ""
            let excerpt = prompt.count > 80 ? String(prompt.prefix(80)) + "…" : prompt
            self.kind = .messages(prompt: excerpt, user: request.userID ?? "anonymous")
            self.count = configuration.messages
        }
    }

    /// The content of event `index` (0-based).
    func content(at index: Int) -> String {
        switch self.kind {
        case .echo(let chunks):
            return chunks[index]
        case .messages(let prompt, let user):
            return "Mock message \(index + 1) of \(self.count) for user \(user) about \"\(prompt)\". "
        case .words:
            return Self.prose[index % Self.prose.count] + " "
        }
    }

    /// What `--mock-text words` streams, one word per event: text that reads like an answer.
    static let prose: [Substring] = """
        Handing the socket over is the whole trick. Your application checks who is asking, \
        decides what they may ask for, and then steps aside: Apache passes the open connection \
        to the streaming daemon and its worker is free again at once. The daemon holds the \
        connection for as long as the model keeps talking, which may be minutes, while costing \
        well under a kilobyte of memory. A few hundred Apache workers could never wait on \
        thousands of slow answers; one small process can. If the connection drops, a recorded \
        stream picks up where it was, on any host that shares the same Redis, and when the \
        answer is complete the application hears about it through a signed callback, ready to \
        store. Nothing here asks your code to learn a new framework: two response headers are \
        the entire interface.
        """.split(separator: " ")
}

extension HandoffRequest {
    /// The text of the last user message, if any.
    var lastUserText: String? {
        guard let message = self.messages?.last(where: { $0.role == "user" }) else { return nil }
        switch message.content {
        case .text(let text): return text
        case .parts(let parts):
            for case .text(let text) in parts { return text }
            return nil
        }
    }
}
