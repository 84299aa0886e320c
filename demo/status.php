<?php
// The demo's "why" panel, polled by the page: Apache's busy workers (mod_status) next to the
// streams handoffd holds (its /metrics). Both are read here, server-side, on loopback.
header('Content-Type: application/json');
header('Cache-Control: no-store');
$context = stream_context_create(['http' => ['timeout' => 1.0]]);

$apache = @file_get_contents('http://127.0.0.1:' . (int)$_SERVER['SERVER_PORT'] . '/server-status?auto', false, $context);
$busy = $idle = null;
if ($apache !== false) {
    if (preg_match('/^BusyWorkers: (\d+)$/m', $apache, $m)) $busy = (int)$m[1];
    if (preg_match('/^IdleWorkers: (\d+)$/m', $apache, $m)) $idle = (int)$m[1];
}

$metricsUrl = $_SERVER['HANDOFF_METRICS_URL'] ?? (getenv('HANDOFF_METRICS_URL') ?: 'http://127.0.0.1:9464/metrics');
$metrics = @file_get_contents($metricsUrl, false, $context);
$streams = null;
if ($metrics !== false && preg_match('/^handoffd_active_streams ([0-9.e+]+)$/m', $metrics, $m)) {
    $streams = (int)$m[1];
}

echo json_encode([
    'apache_busy_workers' => $busy,
    'apache_idle_workers' => $idle,
    'handoffd_active_streams' => $streams,
]), "\n";
