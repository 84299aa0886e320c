<?php
// An ordinary page: no handoff; must be served by PHP untouched.
header('X-Plain: yes');
echo "plain page, sapi=" . PHP_SAPI . "\n";
