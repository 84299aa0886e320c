<?php
// The demo's burst: starts N streams through this very Apache (each a POST to stream.php,
// handed off to handoffd) and reads them all to the end, so the page's panel can show
// Apache's workers staying free while the daemon holds every stream. This script itself
// keeps one worker busy until the burst is over; that is the only one.
header('Content-Type: application/json');
header('Cache-Control: no-store');
if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    http_response_code(405);
    echo json_encode(['error' => 'POST to start a burst']), "\n";
    exit;
}
$count = max(1, min(500, (int)($_GET['streams'] ?? 300)));
set_time_limit(120);
ignore_user_abort(true);

$body = json_encode(['prompt' => 'burst', 'backend' => 'mock']);
$request = "POST /stream.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    . 'Content-Length: ' . strlen($body) . "\r\nConnection: close\r\n\r\n" . $body;
$port = (int)$_SERVER['SERVER_PORT'];
$open = [];
$failed = 0;
for ($i = 0; $i < $count; $i++) {
    $socket = @stream_socket_client("tcp://127.0.0.1:$port", $errno, $error, 5);
    if ($socket === false) { $failed++; continue; }
    fwrite($socket, $request);
    stream_set_blocking($socket, false);
    $open[(int)$socket] = ['socket' => $socket, 'data' => ''];
}
$started = count($open);
$completed = 0;
$deadline = microtime(true) + 90;
while ($open && microtime(true) < $deadline) {
    $read = array_map(fn($s) => $s['socket'], $open);
    $write = $except = null;
    if (@stream_select($read, $write, $except, 1) === false) break;
    foreach ($read as $socket) {
        $key = (int)$socket;
        $chunk = fread($socket, 65536);
        if ($chunk === '' || $chunk === false) {
            if (feof($socket)) {
                if (str_contains($open[$key]['data'], 'data: [DONE]')) $completed++; else $failed++;
                fclose($socket);
                unset($open[$key]);
            }
            continue;
        }
        // Keep only the tail: enough to see the end marker.
        $open[$key]['data'] = substr($open[$key]['data'] . $chunk, -64);
    }
}
foreach ($open as $entry) { fclose($entry['socket']); $failed++; }
echo json_encode(['requested' => $count, 'started' => $started, 'completed' => $completed, 'failed' => $failed]), "\n";
