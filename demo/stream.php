<?php
// The application's part: authenticate (here: a demo user), validate the prompt, then ask
// Apache to hand this connection to handoffd and exit. The daemon writes the response.
$socket = getenv('HANDOFF_SOCKET') ?: ($_SERVER['HANDOFF_SOCKET'] ?? '/run/handoffd/handoffd.sock');

function fail(int $status, string $message): void {
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode(['error' => $message]), "\n";
    exit;
}

function hand_off(string $socket, array $data): void {
    header('X-Socket-Handoff: ' . $socket);
    header('X-Handoff-Data: ' . json_encode($data, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES));
    exit;
}

// GET stream.php?stream_id=ID: resume a stream (handoffd --redis-url). The browser's
// EventSource reconnects this way by itself, sending the last id it saw as Last-Event-ID;
// any web host sharing the Redis can serve it. A real application would check here that
// the stream belongs to the signed-in user; the demo's ids are 128 random bits.
if ($_SERVER['REQUEST_METHOD'] === 'GET' && isset($_GET['stream_id'])) {
    $streamId = (string)$_GET['stream_id'];
    if (preg_match('/\A[A-Za-z0-9_.:-]{1,128}\z/', $streamId) !== 1) {
        fail(400, 'invalid stream_id');
    }
    $last = (string)($_SERVER['HTTP_LAST_EVENT_ID'] ?? ($_GET['last_event_id'] ?? '0'));
    if (preg_match('/\A[0-9]{0,18}\z/', $last) !== 1) {
        fail(400, 'invalid Last-Event-ID');
    }
    hand_off($socket, [
        'stream_id' => $streamId,
        'resume' => true,
        'last_event_id' => $last === '' ? '0' : $last,
        'user_id' => 'demo-user',
        'request_id' => bin2hex(random_bytes(8)),
    ]);
}

if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    fail(405, 'POST a JSON body with a prompt');
}
$input = json_decode(file_get_contents('php://input'), true);
$prompt = is_array($input) ? trim((string)($input['prompt'] ?? '')) : '';
if ($prompt === '' || strlen($prompt) > 16000 || preg_match('/\A.{1,4000}\z/su', $prompt) !== 1) {
    fail(400, 'the prompt must be 1 to 4000 characters');
}
$backend = $input['backend'] ?? 'mock';
if (!in_array($backend, ['mock', 'openai'], true)) {
    fail(400, 'unknown backend');
}

$data = [
    'prompt' => $prompt,
    'backend' => $backend,
    'user_id' => 'demo-user',
    'request_id' => bin2hex(random_bytes(8)),
];
// With Redis behind handoffd (SetEnv HANDOFF_RESUMABLE 1), the stream is recorded: a
// dropped connection resumes with GET stream.php?stream_id=… (see above), on any host.
if (($_SERVER['HANDOFF_RESUMABLE'] ?? getenv('HANDOFF_RESUMABLE')) === '1') {
    $streamId = bin2hex(random_bytes(16));
    $data['stream_id'] = $streamId;
    $data['resumable'] = true;
    $data['response_headers'] = ['X-Stream-Id' => $streamId];
}
hand_off($socket, $data);
