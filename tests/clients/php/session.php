<?php
// PHP's own session handler over php-memcached (session.save_handler =
// memcached, save_path and, for the text variant, sess_binary_protocol given
// with -d by tests/test_clients.py; every other setting the package's default).
//
// usage: php -d ... session.php write|read
// One fixed session id: "write" stores a counter and a string in $_SESSION,
// "read" (another process, after the server was killed and restarted) prints
// what it finds.

session_id('clientstestsession0123456789');
if (!session_start()) {
    echo "FAIL session_start\n";
    exit(1);
}
if ($argv[1] === 'write') {
    $_SESSION['user'] = 'alice';
    $_SESSION['visits'] = 41;
    if (!session_write_close()) {
        echo "FAIL session_write\n";
        exit(1);
    }
    echo "ok session_written\n";
} else {
    $found = ($_SESSION['user'] ?? null) === 'alice' && ($_SESSION['visits'] ?? null) === 41;
    echo $found ? "ok session_kept\n" : "FAIL session_kept: " . json_encode($_SESSION) . "\n";
    session_write_close();
    exit($found ? 0 : 1);
}
