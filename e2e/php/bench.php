<?php
// The leanest handoff endpoint, for measuring Apache's own cost per handoff (`make bench`).
header('X-Socket-Handoff: ' . $_SERVER['HANDOFF_SOCKET']);
header('X-Handoff-Data: {"prompt":"bench","user_id":1}');
