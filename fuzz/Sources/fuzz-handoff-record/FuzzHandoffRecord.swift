import HandoffWire

#if canImport(Glibc)
import Glibc
#endif

/// Handoff records over a real SEQPACKET socketpair, as the acceptor receives them: arbitrary
/// payloads with zero to three passed descriptors (the first byte picks how many and of which
/// kind). Receiving and inspecting never crashes, and every passed descriptor ends up closed.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHandoffRecord(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let control = start[0]
    let payload = Array(UnsafeBufferPointer(start: start + 1, count: count - 1))
    let before = openDescriptors()
    do {
        let (sender, receiver) = try Syscall.socketpair(domain: AF_UNIX, type: CInt(SOCK_SEQPACKET.rawValue), nonBlocking: true)
        defer {
            _ = close(sender)
            _ = close(receiver)
        }
        var passed: [CInt] = []
        for index in 0..<Int(control % 4) {
            var pair: [CInt] = [-1, -1]
            // Connected stream sockets (what Apache passes) or datagram ones (what it must not).
            let type = (control >> (2 + index)) & 1 == 0 ? SOCK_STREAM : SOCK_DGRAM
            guard socketpair(AF_UNIX, CInt(type.rawValue), 0, &pair) == 0 else { break }
            passed.append(pair[0])
            _ = close(pair[1])
        }
        defer { passed.forEach { _ = close($0) } }
        guard (try? HandoffSender.send(on: sender, payload: payload, descriptors: passed, nulForEmpty: control & 0x40 == 0)) == true else {
            return 0
        }
        let received = try HandoffReceiver(maximumPayloadBytes: 1024).receive(from: receiver)
        if case .record(let record) = received {
            switch HandoffInspection.inspect(record) {
            case .accepted(let client, let trimmed):
                precondition(trimmed.first != 0 && trimmed.last != 0, "NULs left around the payload")
                client.closeIfOpen()
            case .answer(let client, _):
                client.closeIfOpen()
            case .dropped:
                break
            }
        }
    } catch {
        return 0
    }
    precondition(openDescriptors() == before, "a descriptor leaked")
    return 0
}

private func openDescriptors() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(directory) }
    var count = 0
    while readdir(directory) != nil { count += 1 }
    return count
}
