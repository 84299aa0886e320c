<?php
// Asks mod_socket_handoff to hand this connection to a daemon.
// Params (query/form, or a JSON body): socket, data (a one-line JSON string),
// header (an extra ordinary response header). When a handoff happens, the body
// below must never reach the client.
$in = $_REQUEST;
if (str_starts_with($_SERVER['CONTENT_TYPE'] ?? '', 'application/json')) {
    $in = json_decode(file_get_contents('php://input'), true) ?? [];
}
if (isset($in['header'])) {
    header($in['header']);
}
if (isset($in['socket'])) {
    header('X-Socket-Handoff: ' . $in['socket']);
}
if (isset($in['data'])) {
    header('X-Handoff-Data: ' . $in['data']);
}
echo "PHP-BODY\n";
