<?php
// Receives handoffd's completion callbacks (handoffd --completion-url …/completion.php):
// the finished answer of every stream, after this application's PHP has long exited.
//
// 1. Check the signature: HMAC-SHA256 of the raw body with the shared secret, compared in
//    constant time. Anything unsigned or altered is refused with 401.
// 2. Store the answer. Delivery is at least once (a callback is retried until it gets a 2xx,
//    and survives daemon restarts when Redis is configured), so storing must be idempotent:
//    here one file per delivery_id; in a real application an INSERT keyed by delivery_id
//    (or by stream_id/request_id) that ignores a repeat.
$secretFile = $_SERVER['HANDOFF_COMPLETION_SECRET_FILE'] ?? (getenv('HANDOFF_COMPLETION_SECRET_FILE') ?: '/etc/handoffd/completion-secret');
$store = $_SERVER['HANDOFF_COMPLETIONS_DIR'] ?? (getenv('HANDOFF_COMPLETIONS_DIR') ?: '/var/lib/handoffd-demo/completions');

function answer(int $status, string $message = ''): void {
    http_response_code($status);
    if ($message !== '') {
        header('Content-Type: application/json');
        echo json_encode(['error' => $message]), "\n";
    }
    exit;
}

if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    answer(405, 'POST only');
}
$secret = @file_get_contents($secretFile);
if ($secret === false || strlen(trim($secret)) < 16) {
    error_log("completion.php: cannot read the shared secret from $secretFile");
    answer(500, 'receiver misconfigured');
}
$body = file_get_contents('php://input');
$expected = 'sha256=' . hash_hmac('sha256', $body, trim($secret));
if (!hash_equals($expected, (string)($_SERVER['HTTP_X_HANDOFF_SIGNATURE'] ?? ''))) {
    answer(401, 'bad signature');
}
$doc = json_decode($body, true);
if (!is_array($doc) || !is_string($doc['delivery_id'] ?? null) || preg_match('/\A[0-9a-f]{32}\z/', $doc['delivery_id']) !== 1) {
    answer(400, 'not a completion document');
}
// What the application keeps: who asked, what came back, how it ended.
$record = [
    'delivery_id' => $doc['delivery_id'],
    'stream_id' => $doc['stream_id'],
    'request_id' => $doc['request_id'],
    'user_id' => $doc['user_id'],
    'status' => $doc['status'],
    'finish_reason' => $doc['finish_reason'],
    'text' => $doc['text'],
    'usage' => $doc['usage'],
    'error' => $doc['error'],
];
$path = $store . '/' . $doc['delivery_id'] . '.json';
if (file_put_contents($path . '.tmp', json_encode($record, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES), LOCK_EX) === false
    || !rename($path . '.tmp', $path)) {
    answer(503, 'cannot store the answer now');   // not a 2xx: handoffd retries
}
answer(204);
