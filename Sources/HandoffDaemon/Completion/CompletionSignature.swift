import Crypto
import NIOCore

/// `X-Handoff-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body with the shared secret.
/// The receiver recomputes it over the raw body and compares in constant time
/// (PHP: `hash_equals('sha256=' . hash_hmac('sha256', $body, $secret), $header)`).
enum CompletionSignature {
    static func header(for body: ByteBuffer, secret: [UInt8]) -> String {
        let code = body.withUnsafeReadableBytes { bytes in
            HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: secret))
        }
        let hex = "0123456789abcdef".utf8.map { $0 }
        var text = "sha256="
        text.reserveCapacity(7 + 64)
        for byte in code {
            text.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
            text.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0x0F)]))
        }
        return text
    }
}
