import HandoffDaemon
import Testing

/// `Retry-After` from an upstream: seconds or an HTTP-date pass; anything else is dropped.
@Suite struct RetryAfterTests {
    @Test(arguments: [
        ("7", "7"), (" 120 ", "120"), ("0", "0"),
        ("Wed, 21 Oct 2026 07:28:00 GMT", "Wed, 21 Oct 2026 07:28:00 GMT"),
        ("Sunday, 06-Nov-94 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT"),
        ("Sun Nov  6 08:49:37 1994", "Sun Nov  6 08:49:37 1994"),
    ])
    func wellFormedValuesPass(header: String, value: String) {
        #expect(RetryAfter.parse(header)?.value == value)
    }

    @Test(arguments: ["", "soon", "-1", "7s", "Wed, 21 Oct 2026 07:28:00 GMT\r\nX-Injected: 1", "Wed, 21 Oct 2026", "1.5"])
    func anythingElseIsDropped(header: String) {
        #expect(RetryAfter.parse(header) == nil)
    }
}
