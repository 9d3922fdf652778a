#!/usr/bin/perl
# Cache::Memcached::Fast (text protocol), driven by tests/test_clients.py.
#
# usage: perl client.pl HOST PORT checks|write|reread
# Prints "ok <check>" per check; the first failure prints "FAIL <check>: why"
# and exits 1.
use strict;
use warnings;
use Cache::Memcached::Fast;

my ($host, $port, $phase) = @ARGV;
my $mc = Cache::Memcached::Fast->new({
    servers => ["$host:$port"], connect_timeout => 2, io_timeout => 2,
    close_on_error => 1, max_failures => 0, utf8 => 0,
});
my $past = time() - 3600;  # an absolute exptime in the past: expired at once, no waiting

sub show { my $v = shift; return defined $v ? "'$v'" : 'undef' }

sub expect {
    die "expect takes two values\n" unless @_ == 2;
    my ($got, $want) = @_;
    my $same = (defined $got && defined $want) ? $got eq $want : !defined $got && !defined $want;
    die "got " . show($got) . ", want " . show($want) . "\n" unless $same;
}

sub check {
    my ($name, $fn) = @_;
    eval { $fn->(); 1 } or do { my $e = $@; chomp $e; print "FAIL $name: $e\n"; exit 1 };
    print "ok $name\n";
}

my @checks = (
    set_get => sub {
        expect(scalar $mc->set('pl:k', 'hello'), 1);
        expect(scalar $mc->get('pl:k'), 'hello');
        expect(scalar $mc->get('pl:missing'), undef);
    },
    get_multi => sub {
        $mc->set('pl:a', '1');
        $mc->set('pl:b', '2');
        my $got = $mc->get_multi('pl:a', 'pl:b', 'pl:nope');
        expect(join(',', map { "$_=$got->{$_}" } sort keys %$got), 'pl:a=1,pl:b=2');
    },
    delete => sub {
        expect(scalar $mc->delete('pl:a'), 1);
        expect(scalar $mc->get('pl:a'), undef);
        expect(scalar $mc->delete('pl:a'), '');
    },
    incr_decr => sub {
        $mc->set('pl:n', '10');
        expect(scalar $mc->incr('pl:n', 5), 15);
        expect(scalar $mc->decr('pl:n', 20), '0E0');  # decr stops at 0 ("0 but true")
        expect(scalar $mc->incr('pl:nothere', 1), '');
    },
    cas => sub {
        $mc->set('pl:c', 'v1');
        my $item = $mc->gets('pl:c');
        expect($item->[1], 'v1');
        expect(scalar $mc->cas('pl:c', $item->[0], 'v2'), 1);
        expect(scalar $mc->cas('pl:c', $item->[0], 'v3'), '');  # the token is stale now
        expect(scalar $mc->get('pl:c'), 'v2');
    },
    touch => sub {
        $mc->set('pl:t', 'x');
        expect(scalar $mc->touch('pl:t', 3600), 1);
        expect(scalar $mc->get('pl:t'), 'x');
        expect(scalar $mc->touch('pl:t', $past), 1);
        expect(scalar $mc->get('pl:t'), undef);
        expect(scalar $mc->touch('pl:t', 3600), '');
    },
    expiry => sub {
        $mc->set('pl:e', 'x', $past);
        expect(scalar $mc->get('pl:e'), undef);
        $mc->set('pl:e2', 'y', 3600);
        expect(scalar $mc->get('pl:e2'), 'y');
    },
    flush => sub {
        $mc->set('pl:f', 'x');
        expect(scalar $mc->flush_all->{"$host:$port"}, 1);  # one result per server
        expect(scalar $mc->get('pl:f'), undef);
    },
);

if ($phase eq 'checks') {
    while (my ($name, $fn) = splice(@checks, 0, 2)) { check($name, $fn) }
} elsif ($phase eq 'write') {
    check(persist_written => sub { expect(scalar $mc->set('pl:reread', 'kept'), 1) });
} else {
    check(restart_keeps_data => sub { expect(scalar $mc->get('pl:reread'), 'kept') });
}
