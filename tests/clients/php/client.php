<?php
// php-memcached (libmemcached), driven by tests/test_clients.py.
//
// usage: php client.php HOST PORT checks|write|reread [USER PASSWORD]
// With USER and PASSWORD: the binary protocol with SASL PLAIN
// (OPT_BINARY_PROTOCOL + setSaslAuthData); without: the text protocol.
// Prints "ok <check>" per check; the first failure prints
// "FAIL <check>: why" and exits 1.

[$host, $port, $phase] = [$argv[1], (int)$argv[2], $argv[3]];
$user = $argv[4] ?? null;
$m = new Memcached();
$m->setOption(Memcached::OPT_CONNECT_TIMEOUT, 2000);
$m->setOption(Memcached::OPT_POLL_TIMEOUT, 2000);
$m->setOption(Memcached::OPT_COMPRESSION, false);
if ($user !== null) {
    $m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
    $m->setSaslAuthData($user, $argv[5]);
}
$m->addServer($host, $port);
$past = time() - 3600;  // an absolute exptime in the past: expired at once, no waiting

function expect($got, $want) {
    global $m;
    if ($got !== $want) {
        throw new Exception("got " . var_export($got, true) . ", want " . var_export($want, true)
            . " (" . $m->getResultMessage() . ")");
    }
}

function check($name, $fn) {
    try {
        $fn();
    } catch (Throwable $e) {
        echo "FAIL $name: ", $e->getMessage(), "\n";
        exit(1);
    }
    echo "ok $name\n";
}

$checks = [
    'set_get' => function () use ($m) {
        expect($m->set('php:k', 'hello'), true);
        expect($m->get('php:k'), 'hello');
        expect($m->get('php:missing'), false);
        expect($m->getResultCode(), Memcached::RES_NOTFOUND);
    },
    'get_multi' => function () use ($m) {
        $m->set('php:a', '1');
        $m->set('php:b', '2');
        $got = $m->getMulti(['php:a', 'php:b', 'php:nope']);
        ksort($got);
        expect($got, ['php:a' => '1', 'php:b' => '2']);
    },
    'delete' => function () use ($m) {
        expect($m->delete('php:a'), true);
        expect($m->get('php:a'), false);
        expect($m->delete('php:a'), false);
        expect($m->getResultCode(), Memcached::RES_NOTFOUND);
    },
    'incr_decr' => function () use ($m) {
        $m->set('php:n', 10);
        expect($m->increment('php:n', 5), 15);
        expect($m->decrement('php:n', 20), 0);  // decr stops at 0
        expect($m->increment('php:nothere', 1), false);
    },
    'cas' => function () use ($m) {
        $m->set('php:c', 'v1');
        $item = $m->get('php:c', null, Memcached::GET_EXTENDED);
        expect($item['value'], 'v1');
        expect($m->cas($item['cas'], 'php:c', 'v2'), true);
        expect($m->cas($item['cas'], 'php:c', 'v3'), false);  // the token is stale now
        expect($m->getResultCode(), Memcached::RES_DATA_EXISTS);
        expect($m->get('php:c'), 'v2');
    },
    'touch' => function () use ($m, $past) {
        $m->set('php:t', 'x');
        expect($m->touch('php:t', 3600), true);
        expect($m->get('php:t'), 'x');
        expect($m->touch('php:t', $past), true);
        expect($m->get('php:t'), false);
        expect($m->touch('php:t', 3600), false);
    },
    'expiry' => function () use ($m, $past) {
        $m->set('php:e', 'x', $past);
        expect($m->get('php:e'), false);
        $m->set('php:e2', 'y', 3600);
        expect($m->get('php:e2'), 'y');
    },
    'flush' => function () use ($m) {
        $m->set('php:f', 'x');
        expect($m->flush(), true);
        expect($m->get('php:f'), false);
    },
];

if ($user !== null) {
    $checks = ['sasl_refuses_a_wrong_password' => function () use ($host, $port, $user) {
        $wrong = new Memcached();
        $wrong->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
        $wrong->setSaslAuthData($user, 'not-' . $user . '-s-password');
        $wrong->addServer($host, $port);
        if ($wrong->set('php:k', 'nope') !== false) {
            throw new Exception('a wrong password was let in');
        }
        if ($wrong->getResultCode() !== Memcached::RES_AUTH_FAILURE) {
            throw new Exception('want an auth failure, got: ' . $wrong->getResultMessage());
        }
    }] + $checks;
}

if ($phase === 'checks') {
    foreach ($checks as $name => $fn) {
        check($name, $fn);
    }
} elseif ($phase === 'write') {
    check('persist_written', function () use ($m) {
        expect($m->set('php:reread', 'kept'), true);
    });
} else {
    check('restart_keeps_data', function () use ($m) {
        expect($m->get('php:reread'), 'kept');
    });
}
