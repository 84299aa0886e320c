<?php
// An application endpoint: authenticate, validate, hand off, exit.
session_start();
if (!isset($_SESSION['user_id'])) {
    http_response_code(401);
    exit;
}
$input = json_decode(file_get_contents('php://input'), true) ?? [];
$prompt = trim((string)($input['prompt'] ?? ''));
if ($prompt === '' || strlen($prompt) > 16000) {
    http_response_code(400);
    exit;
}
header('X-Socket-Handoff: /run/handoffd/handoffd.sock');
header('X-Handoff-Data: ' . json_encode([
    'prompt' => $prompt,
    'user_id' => $_SESSION['user_id'],
    'request_id' => $_SERVER['UNIQUE_ID'] ?? bin2hex(random_bytes(8)),
    'model' => 'gpt-4o-mini',
    'response_headers' => ['X-Request-Id' => $_SERVER['UNIQUE_ID'] ?? ''],
], JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES));
exit;
