import HandoffDaemon
import Testing
@testable import HandoffRequest

@Suite struct ResponseHeaderFilterTests {
    private func filter(_ headers: [String: String]) throws(HandoffRequestError) -> [HandoffRequest.ResponseHeader] {
        try ResponseHeaderFilter.filter(headers, limits: .init())
    }

    @Test func dropsFramingAndReservedNamesInAnyCase() throws {
        let kept = try self.filter([
            "content-type": "a", "Content-Length": "1", "TRANSFER-ENCODING": "chunked", "Connection": "x",
            "Cache-Control": "y", "Content-Encoding": "gzip", "X-Accel-Buffering": "yes", "X-Socket-Handoff": "/x",
            "X-Ok": "fine",
        ])
        #expect(kept == [.init(name: "X-Ok", value: "fine")])
    }

    @Test func dropsNamesThatAreNotTokens() throws {
        let kept = try self.filter(["Bad Name": "1", "bad:name": "2", "": "3", "é": "4", "Good!#$%&'*+-.^_`|~1": "5"])
        #expect(kept == [.init(name: "Good!#$%&'*+-.^_`|~1", value: "5")])
    }

    @Test(arguments: ["a\rb", "a\nb", "a\u{0}b", "a\u{7f}b", "a\u{1b}b"])
    func rejectsControlCharactersInValues(value: String) {
        #expect(throws: HandoffRequestError.self) { _ = try self.filter(["X-A": value]) }
    }

    @Test func allowsTabAndTrimsWhitespace() throws {
        #expect(try self.filter(["X-A": " \ta\tb \t"]) == [.init(name: "X-A", value: "a\tb")])
    }

    @Test func orderIsDeterministic() throws {
        let kept = try self.filter(["x-b": "1", "X-a": "2", "X-C": "3", "x-A": "4"])
        #expect(kept.map(\.name) == ["X-a", "x-A", "x-b", "X-C"])
    }
}
