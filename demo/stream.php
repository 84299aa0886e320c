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

header('X-Socket-Handoff: ' . $socket);
header('X-Handoff-Data: ' . json_encode([
    'prompt' => $prompt,
    'backend' => $backend,
    'user_id' => 'demo-user',
    'request_id' => bin2hex(random_bytes(8)),
], JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES));
