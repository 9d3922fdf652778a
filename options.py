"""The server's command line: memcached's flag names where memcached has the
option, memcached-lite's own long options beside them.

It is data first. OPTIONS is the table of options (flags, then argparse's
keywords), EXTENDED the table of memcached's `-o name=value` suboptions,
EXTENDED_RULES memcached's value rules for the suboptions only named here,
and CHECKS the table of what is refused once everything is parsed, each with
its message and exit status, in the order they are tried. Numbers are read
as memcached reads them (atoi, safe_strtol). A new option is a row of OPTIONS (and,
if some values are refused, a row of CHECKS); a new `-o` suboption is a row
of EXTENDED.

    args = parse_args(sys.argv[1:])
    settings = make_settings(args)
"""

import argparse
import os
import re
import ssl
import urllib.parse
import sys

import handlers
from commands.watch import BUFFER as WATCHER_BUFFER
from store import DISK_POLICIES, EVERYSEC, LEVELS, METHODS, WATCHDOG

# where the server listens without -l (memcached: every interface)
LOOPBACK = "127.0.0.1"

# memcached's ssl_verify_mode: none, request, require, once (as require here)
VERIFY_MODES = {0: ssl.CERT_NONE, 1: ssl.CERT_OPTIONAL, 2: ssl.CERT_REQUIRED, 3: ssl.CERT_REQUIRED}


# -i: memcached 1.6.18's usage_license() text (its LICENSE, as memcached prints
# it), under a line of memcached-lite's own
LICENSE = """memcached-lite: a memcached 1.6.18-compatible server in Python; the protocol it speaks and
the messages it copies are memcached's, under memcached's license:

memcached 1.6.18

Copyright (c) 2003, Danga Interactive, Inc. <http://www.danga.com/>
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are
met:

    * Redistributions of source code must retain the above copyright
notice, this list of conditions and the following disclaimer.

    * Redistributions in binary form must reproduce the above
copyright notice, this list of conditions and the following disclaimer
in the documentation and/or other materials provided with the
distribution.

    * Neither the name of the Danga Interactive nor the names of its
contributors may be used to endorse or promote products derived from
this software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS
"AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT
LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR
A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT
OWNER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL,
SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT
LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY
THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT
(INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""


def default_data_dir(port, unix_socket=None):
    """Where items live when --data-dir is not given: one folder per port, or
    per socket path under -s (a -s server and a TCP one on the default port
    must not meet at one data dir; the second would refuse to start)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    if unix_socket is not None:
        return os.path.join(base, "memcached-lite", "unix" + urllib.parse.quote(os.path.abspath(unix_socket), safe=""))
    return os.path.join(base, "memcached-lite", str(port))


_INTEGER = re.compile(r"\s*([+-]?\d+)")
_REAL = re.compile(r"\s*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan))", re.IGNORECASE)


def wrap_int(value):
    """A C int's value: the low 32 bits, signed."""
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


def atoi(text):
    """C's atoi, as memcached reads most numbers (-p -c -m -U -R -b -t -n -N,
    -o idle_timeout): leading blanks, a sign, the digits there are; none is
    0 ("abc" is 0, "12ab" 12), and a long's overflow clamps, then wraps to an int."""
    found = _INTEGER.match(text)
    if not found:
        return 0
    return wrap_int(max(-(1 << 63), min((1 << 63) - 1, int(found.group(1)))))


def atof(text):
    """C's atof (memcached's -f): the number at the start, else 0.0."""
    found = _REAL.match(text)
    return float(found.group(1)) if found else 0.0


def item_size(text):
    """memcached's -I, as it reads it: a k/K or m/M at the end multiplies
    (in a C int: 4096m wraps to 0), anything else is atoi's bytes (`2g` is 2)."""
    units = {"k": 1 << 10, "m": 1 << 20}
    if text and text[-1].lower() in units:
        return wrap_int(atoi(text[:-1]) * units[text[-1].lower()])
    return atoi(text)


def memory_bytes(megabytes):
    """memcached's -m in bytes: ((size_t)atoi(optarg)) * 1024 * 1024, so -1
    is all but 1 MiB of 2**64, a cache with no bound."""
    return (megabytes % (1 << 64)) * (1 << 20) % (1 << 64)


def parse_size(text):
    """--max-disk: bytes, or with a k/m/g suffix."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


def auth_file(path):
    """-Y: the path, once it is known to load."""
    try:
        handlers.load_auth_file(path)
    except handlers.AuthFileError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return path


def binding_protocol(value):
    """-B: auto, binary or ascii, refused with memcached's message."""
    if value not in ("auto", "binary", "ascii"):
        raise argparse.ArgumentTypeError(
            f"Invalid value for binding protocol: {value}\n -- should be one of auto, binary, or ascii"
        )
    return value


def octal_mode(text):
    """-a: the socket file's mode in octal, as memcached reads it (strtol
    base 8: 0770, 770 and 1777 alike); memcached takes text that is no octal
    number as 0, a socket nobody may open, so that is refused here."""
    digits = text.strip()
    if not digits or any(c not in "01234567" for c in digits):
        raise argparse.ArgumentTypeError(f"-a takes an octal mode such as 0770, not {text!r}")
    return int(digits, 8)


# sockaddr_un's sun_path holds 108 bytes; memcached copies at most 107 (a
# longer path it cuts short, and binds the cut one)
UNIX_PATH_MAX = 107


def sasl_file(path):
    """--sasl-file (or MEMCACHED_SASL_PWDB): the path, once it is known to load."""
    return auth_file(path)


class PrintAndExit(argparse.Action):
    """-i: print `text` as it is (argparse's version action would reflow
    it) and exit 0."""

    def __init__(self, option_strings, dest, text, help=None):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)
        self.text = text

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(self.text)
        parser.exit(0)


# (flags, argparse keywords): the parser is built from this table, in its order
OPTIONS = (
    (("-p", "--port"), dict(
        type=atoi, default=None,
        help="TCP port to listen on (default: 11211); 0: no TCP port, -1: one the kernel picks, as memcached",
    )),
    (("-l", "--listen"), dict(
        action="append", default=None,
        help="interfaces to listen on, as memcached's: a list (`,` or `;`, or -l again) of host, host:port, "
        "[v6]:port or * (default: 127.0.0.1; memcached's is every interface)",
    )),
    (("-s", "--unix-socket"), dict(
        default=None, metavar="PATH",
        help="listen on this unix-domain socket instead of TCP (-p and -l are then unused); "
        "a stale socket file is replaced, one a live server answers on is refused",
    )),
    (("-a", "--unix-mask"), dict(
        type=octal_mode, default=0o700, metavar="MODE",
        help="the unix socket file's access mode, in octal as chmod's (default: 0700)",
    )),
    (("-c", "--conn-limit"), dict(
        type=atoi, default=1024,
        help="max simultaneous connections; more are answered 'ERROR Too many open connections' "
        "and closed (default: 1024)",
    )),
    (("-m", "--memory-limit"), dict(
        type=atoi, default=64, help="MB of items kept in memory in front of the files (default: 64)",
    )),
    (("-I", "--max-item-size"), dict(
        type=item_size, default=1 << 20,
        help="largest item, e.g. 1m or 512k: a multiple of 512k (memcached's slab_chunk_max), at most half "
        "of -m (default: 1m)",
    )),
    (("--data-dir",), dict(
        help="where items are kept (default: $XDG_DATA_HOME/memcached-lite/<port>, "
        "i.e. ~/.local/share/memcached-lite/<port>)",
    )),
    (("--fsync",), dict(
        choices=LEVELS, default=EVERYSEC,
        help="always: reply only once the write is on disk (group commit); everysec: "
        "reply after the rename, on disk within about a second; no: when the OS likes "
        "(default: everysec)",
    )),
    (("--fsync-method",), dict(
        choices=METHODS, default="auto",
        help="how writes are made durable: syncfs (one call per batch, Linux), fsync "
        "(each file and folder), auto: syncfs where available (default: auto)",
    )),
    (("-A", "--enable-shutdown"), dict(action="store_true", help="enable the 'shutdown [graceful]' command")),
    (("-F", "--disable-flush-all"), dict(action="store_true", help="refuse flush_all")),
    (("-W", "--disable-watch"), dict(action="store_true", help="refuse the watch command")),
    (("-o", "--extended"), dict(
        action="append", default=[], metavar="OPT=VALUE,...",
        help="memcached's suboptions: idle_timeout=N (close connections idle N seconds), "
        "ssl_chain_cert=, ssl_key=, ssl_ca_cert=, ssl_verify_mode=0|1|2|3; ours: fsync_watchdog=SECONDS "
        f"(everysec's helper barrier unanswered this long is given up and the helper restarted; default {WATCHDOG:g})",
    )),
    (("-R", "--max-reqs-per-event"), dict(
        type=atoi, default=handlers.REQS_PER_EVENT,
        help="commands a connection runs before the others get a turn (default: 20)",
    )),
    (("-b", "--listen-backlog"), dict(
        type=atoi, default=1024, help="the listening socket's backlog queue limit (default: 1024)",
    )),
    (("-d", "--daemon"), dict(
        action="store_true", help="run as a daemon: the command returns once it has forked (use with -P)",
    )),
    (("-V", "--version"), dict(
        action="version", version=f"memcached {handlers.VERSION}", help="print the version and exit, as memcached",
    )),
    (("-i", "--license"), dict(
        action=PrintAndExit, text=LICENSE, help="print memcached's license and exit 0, as memcached's -i",
    )),
    (("-C", "--disable-cas"), dict(
        action="store_true",
        help="no CAS: replies show cas 0, a cas store is EXISTS (NOT_FOUND if missing), as memcached's -C "
        "(the store still keeps its own for restarts)",
    )),
    (("-k", "--lock-memory"), dict(
        action="store_true", help="lock the process's pages in memory (mlockall), as memcached; failure is a warning",
    )),
    (("-u", "--user"), dict(
        help="as root: become this user once the port is bound, before the data dir is opened. "
        "Unlike memcached, root without -u is not refused, only warned (containers and CI run as root)",
    )),
    (("-r", "--enable-coredumps"), dict(
        action="store_true", help="raise the core file size limit to its hard limit, as memcached's -r",
    )),
    (("-U", "--udp-port"), dict(
        type=atoi, default=0,
        help="UDP port: memcached-lite serves no UDP, so only 0 (off, memcached's default); "
        "another fails as memcached's failure to bind it (exit 71), but under -s (no ports at all)",
    )),
    (("-Z", "--enable-ssl"), dict(action="store_true", help="TLS on the listening port (needs --tls-cert)")),
    (("--tls-cert",), dict(help="certificate chain, PEM (-o ssl_chain_cert=)")),
    (("--tls-key",), dict(help="private key, PEM, if not in the certificate file (-o ssl_key=)")),
    (("--tls-ca",), dict(help="CA certificates for client certificates, PEM (-o ssl_ca_cert=)")),
    (("-P", "--pidfile"), dict(help="write the pid here at start; removed at a clean exit")),
    (("--log-file",), dict(help="log here instead of stderr; SIGHUP reopens it (for logrotate)")),
    (("--log-format",), dict(
        choices=("text", "json"), default="text", help="text lines or one JSON object a line",
    )),
    (("-v", "--verbose"), dict(
        action="count", default=0,
        help="-v connections and errors, -vv every command and reply, -vvv state transitions",
    )),
    (("-D",), dict(
        dest="prefix_delimiter", type=lambda text: os.fsencode(text)[:1],  # memcached: the first character
        help="the character that ends a key's prefix for `stats detail`; turns detail on (default: ':')",
    )),
    (("-X", "--disable-dumping"), dict(
        action="store_true", help="refuse key dumps: `stats cachedump` and `lru_crawler metadump`",
    )),
    (("-Y", "--auth-file"), dict(
        type=auth_file,
        help="memcached's ASCII authentication: a file of user:password lines; a client "
        "authenticates with `set <any> 0 0 <n>` and `<user> <password>` as the data",
    )),
    (("--max-disk",), dict(
        type=parse_size, default=None,
        help="most bytes of item records the data dir may hold, e.g. 100m or 2g (default: no limit)",
    )),
    (("-B", "--protocol"), dict(
        type=binding_protocol, default=None,
        help="protocol - one of ascii, binary, or auto (default: auto-negotiate; binary with -S, ascii with -Y)",
    )),
    (("-S", "--enable-sasl"), dict(
        action="store_true",
        help="turn on SASL authentication (PLAIN, binary protocol only) against --sasl-file",
    )),
    (("--sasl-file",), dict(
        type=sasl_file, default=None,
        help="-S's password file of user:password lines (default: $MEMCACHED_SASL_PWDB, as memcached's)",
    )),
    (("--disk-policy",), dict(
        choices=DISK_POLICIES, default="refuse",
        help="past --max-disk: refuse (SERVER_ERROR out of memory storing object, as memcached's -M) "
        "or evict the least recently written files (default: refuse)",
    )),
)

# memcached 1.6.18's options that steer a mechanism memcached-lite does not
# have (threads, slabs, its memory's pages): accepted, so that memcached's own
# command lines (unit files, container entrypoints) start it unchanged, and
# named in one start-up log line. (flags, whether it takes a value, why)
NOT_APPLICABLE = (
    (("-t", "--threads"), True, "one thread: a selectors loop"),
    (("-f", "--slab-growth-factor"), True, "no slab classes"),
    (("-n", "--slab-min-size"), True, "no slab classes"),
    (("-L", "--enable-largepages"), False, "no slab memory"),
    (("-M", "--disable-evictions"), False, "memory only caches the files; see --max-disk and --disk-policy"),
    (("-e", "--memory-file"), True, "items are kept in --data-dir"),
    (("-N", "--napi-ids", "--napi_ids"), True, "no NAPI ids"),
)

# memcached's -o suboptions of the same kind: accepted and named in that line
NOT_APPLICABLE_EXTENDED = frozenset(
    """maxconns_fast no_maxconns_fast hashpower hash_algorithm no_hashexpand tail_repair_time
    lru_crawler no_lru_crawler lru_crawler_sleep lru_crawler_tocrawl lru_maintainer no_lru_maintainer
    hot_lru_pct warm_lru_pct hot_max_factor warm_max_factor temporary_ttl
    read_buf_mem_limit slab_reassign no_slab_reassign slab_automove no_slab_automove
    slab_automove_ratio slab_automove_window slab_automove_freeratio slab_chunk_max slab_sizes
    no_chunked_items worker_logbuf_size track_sizes modern no_modern sock_cookie_id
    inline_ascii_resp no_inline_ascii_resp drop_privileges no_drop_privileges resp_obj_mem_limit
    ext_path ext_page_size ext_wbuf_size ext_threads ext_io_depth ext_item_size ext_item_age
    ext_low_ttl ext_drop_unread ext_recache_rate ext_compact_under ext_drop_under ext_max_frag
    ext_max_sleep ssl_keyformat ssl_ciphers ssl_wbuf_size ssl_session_cache ssl_kernel_tls
    ssl_min_version""".split()
)

def given(name, convert, missing="Missing {} argument"):
    """A -o suboption's converter: memcached's "Missing ... argument" when it
    came with no `=` (getsubopt's NULL value), else convert(value)."""

    def read(value):
        if value is None:
            raise argparse.ArgumentTypeError(missing.format(name))
        return convert(value)

    return read


_STRTOL = re.compile(r"\s*([+-]?\d+)(\s|$)")
_STRTOD = re.compile(r"\s*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan))(\s|$)", re.IGNORECASE)


def c_strtol(text):
    """memcached's safe_strtol (and safe_strtoul): a number, then a blank
    or the end (`12 x` is 12), else None; safe_strtoul's negative is None too."""
    found = _STRTOL.match(text)
    return int(found.group(1)) if found else None


def c_strtoul(text):
    value = c_strtol(text)
    return value if value is not None and value >= 0 else None


def c_strtod(text):
    found = _STRTOD.match(text)
    return float(found.group(1)) if found else None


def safe_strtol(name):
    """A suboption read with memcached's safe_strtol, or "could not parse
    argument to <name>"."""

    def read(value):
        number = c_strtol(value)
        if number is None:
            raise argparse.ArgumentTypeError(f"could not parse argument to {name}")
        return number

    return read


def kib_u32(name):
    """A suboption in KiB read as memcached reads it into an unsigned int:
    safe_strtoul (a number past 64 bits refused), then kept in 32 bits and
    times 1024 in them (4194304 is 0, as in memcached's `stats settings`):
    the bytes."""

    def read(value):
        number = c_strtoul(value)
        if number is None or number >> 64:
            raise argparse.ArgumentTypeError(f"could not parse argument to {name}")
        return (number * 1024) & 0xFFFFFFFF

    return read


def _parsed(read, name):
    """A check: memcached's "could not parse argument to <name>" unless
    read (c_strtol, c_strtoul, c_strtod) takes the value."""
    return lambda v: None if read(v) is not None else f"could not parse argument to {name}"


def _within(read, ok, message):
    """A check: message (formatted with the number) unless ok(number)."""
    return lambda v: None if ok(read(v)) else message.format(read(v))


# the value rules memcached 1.6.18 applies to the -o suboptions memcached-lite
# only names (NOT_APPLICABLE_EXTENDED; its getopt loop, exit 1): name ->
# (the message when it comes with no `=`, None if that is allowed; a check of
# the value: memcached's message, or None)
EXTENDED_RULES = {
    "hashpower": ("Missing numeric argument for hashpower", lambda v: (
        f"Initial hashtable multiplier of {atoi(v)} is too low" if atoi(v) < 12 else
        f"Initial hashtable multiplier of {atoi(v)} is too high\n"
        'Choose a value based on "STAT hash_power_level" from a running instance' if atoi(v) > 32 else None)),
    "slab_automove": (None, _within(atoi, lambda n: 0 <= n <= 2, "slab_automove must be between 0 and 2")),
    "slab_automove_ratio": ("Missing slab_automove_ratio argument",
                            _within(atof, lambda x: 0 < x <= 1, "slab_automove_ratio must be > 0 and < 1")),
    "slab_automove_window": ("Missing slab_automove_window argument",
                             _within(atoi, lambda n: n >= 3, "slab_automove_window must be > 2")),
    "tail_repair_time": ("Missing numeric argument for tail_repair_time",
                         _within(atoi, lambda n: n >= 10, "Cannot set tail_repair_time to less than 10 seconds")),
    "hash_algorithm": ("Missing hash_algorithm argument", lambda v: None if v in ("jenkins", "murmur3", "xxh3")
                       else "Unknown hash_algorithm option (jenkins, murmur3, xxh3)"),
    "lru_crawler_sleep": ("Missing lru_crawler_sleep value", _within(
        atoi, lambda n: 0 <= n <= 1000000, "LRU crawler sleep must be between 0 and 1 second")),
    "lru_crawler_tocrawl": ("Missing lru_crawler_tocrawl value", lambda v: None if c_strtoul(v) is not None
                            else "lru_crawler_tocrawl takes a numeric 32bit value"),
    "hot_lru_pct": ("Missing hot_lru_pct argument",
                    _within(atoi, lambda n: 1 <= n < 80, "hot_lru_pct must be > 1 and < 80")),
    "warm_lru_pct": ("Missing warm_lru_pct argument",
                     _within(atoi, lambda n: 1 <= n < 80, "warm_lru_pct must be > 1 and < 80")),
    "hot_max_factor": ("Missing hot_max_factor argument", _within(atof, lambda x: x > 0, "hot_max_factor must be > 0")),
    "warm_max_factor": ("Missing warm_max_factor argument",
                        _within(atof, lambda x: x > 0, "warm_max_factor must be > 0")),
    "temporary_ttl": ("Missing temporary_ttl argument", lambda v: None),
    "ssl_ciphers": ("Missing ssl_ciphers argument", lambda v: None),
    "ssl_keyformat": ("Missing ssl_keyformat argument", _parsed(c_strtol, "ssl_keyformat")),
    "ssl_min_version": ("Missing ssl_min_version argument", lambda v: (
        "could not parse argument to ssl_min_version" if c_strtol(v) is None else
        None if 0 <= c_strtol(v) <= 3 else "Invalid ssl_min_version. Use help to see valid options.")),
    "ext_path": ("missing argument to ext_path, ie: ext_path=/d/file:5G", lambda v: None if [
        part for part in v.split(":") if part][1:] else "must supply size to ext_path, ie: ext_path=/f/e:64m "
        "(M|G|T|P supported)"),
    **{name: (f"Missing {name} argument", _parsed(c_strtoul, name)) for name in (
        "worker_logbuf_size ssl_wbuf_size read_buf_mem_limit ext_page_size ext_wbuf_size "
        "ext_threads ext_io_depth ext_item_size ext_item_age ext_low_ttl ext_recache_rate ext_compact_under "
        "ext_drop_under ext_max_sleep").split()},
    **{name: (f"Missing {name} argument", _parsed(c_strtod, name))
       for name in ("ext_max_frag", "slab_automove_freeratio")},
}


def refused_suboption(name, value):
    """memcached's refusal of a NOT_APPLICABLE_EXTENDED suboption's value, or None."""
    missing, check = EXTENDED_RULES.get(name, (None, lambda v: None))
    if value is None:
        return missing
    return check(value)


# memcached's -o suboptions that memcached-lite has (the others are refused):
# name -> (the attribute it sets, its converter, the default). A suboption
# that has a long option too (ssl_chain_cert is --tls-cert) gives way to it.
EXTENDED = {
    # memcached: atoi, and a negative one never fires (an unsigned compare), as 0
    "idle_timeout": ("idle_timeout", given("idle_timeout", atoi, "Missing numeric argument for {}"), 0),
    "ssl_chain_cert": ("tls_cert", given("ssl_chain_cert", str), None),
    "ssl_key": ("tls_key", given("ssl_key", str), None),
    "ssl_ca_cert": ("tls_ca", given("ssl_ca_cert", str), None),
    "ssl_verify_mode": ("tls_verify_mode", given("ssl_verify_mode", safe_strtol("ssl_verify_mode")), 0),
    # KiB, each watcher's bound (commands/watch.py); the setting is in bytes
    "watcher_logbuf_size": ("watcher_logbuf_size", given("watcher_logbuf_size", kib_u32("watcher_logbuf_size")),
                            WATCHER_BUFFER),
    # memcached-lite's own, in memcached's manner of tunables
    "fsync_watchdog": ("fsync_watchdog", given("fsync_watchdog", float), WATCHDOG),
}

# memcached's exit statuses for a refused command line: 1 where it returns 1
# or getopt refuses, 64 (sysexits' EX_USAGE) where it exits EX_USAGE, 71
# (EX_OSERR) where it cannot listen
FAILURE, EX_USAGE, EX_OSERR = 1, 64, 71

# memcached's slab geometry, which -I must fit: 1 MiB pages cut into chunks of
# at most slab_chunk_max (half a page unless -o slab_chunk_max= or no_modern)
SLAB_PAGE_SIZE = 1 << 20
ITEM_SIZE_MAX_LOWER, ITEM_SIZE_MAX_UPPER = 1024, 1 << 30

# (refused when true, the message (str.format of the namespace), the exit
# status), tried in this order once all is parsed: memcached's rules, its
# messages and statuses (its getopt loop's refusals, then the checks after it),
# and a few of memcached-lite's own
CHECKS = (
    (lambda a: a.prefix_delimiter == b"", "No delimiter specified", FAILURE),
    (lambda a: a.conn_limit <= 0, "Maximum connections must be greater than 0", FAILURE),
    # memcached refuses only 0, and with a negative -R answers no command at all
    (lambda a: a.max_reqs_per_event <= 0, "Number of requests per event must be greater than 0", FAILURE),
    (lambda a: a.factor <= 1.0, "Factor must be greater than 1", FAILURE),
    (lambda a: a.chunk_size == 0, "Chunk size must be greater than 0", FAILURE),
    (lambda a: a.threads <= 0, "Number of threads must be greater than 0", FAILURE),
    (
        lambda a: a.napi_ids is not None and a.napi_ids <= 0,
        "Maximum number of NAPI IDs must be greater than 0", FAILURE,
    ),
    (lambda a: a.unix_socket == "", "-s needs the path of the socket file", FAILURE),
    (
        lambda a: a.unix_socket is not None and len(os.fsencode(a.unix_socket)) > UNIX_PATH_MAX,
        f"-s: a unix socket's path is at most {UNIX_PATH_MAX} bytes", FAILURE,
    ),
    (lambda a: not a.fsync_watchdog > 0, "-o fsync_watchdog must be a positive number of seconds", FAILURE),
    (
        lambda a: a.tls_verify_mode not in VERIFY_MODES,
        "Invalid ssl_verify_mode. Use help to see valid options.", FAILURE,
    ),
    (
        lambda a: (a.napi_ids or 0) > a.threads,
        "Number of napi_ids({napi_ids}) cannot be greater than number of threads({threads})", EX_USAGE,
    ),
    (lambda a: a.max_item_size < ITEM_SIZE_MAX_LOWER, "Item max size cannot be less than 1024 bytes.", EX_USAGE),
    (
        lambda a: a.max_item_size > a.memory_bytes // 2,
        "Cannot set item size limit higher than 1/2 of memory max.", EX_USAGE,
    ),
    (
        lambda a: a.max_item_size > ITEM_SIZE_MAX_UPPER,
        "Cannot set item size limit higher than a gigabyte.", EX_USAGE,
    ),
    (
        lambda a: a.slab_chunk_max > a.max_item_size,
        "slab_chunk_max (bytes: {slab_chunk_max}) cannot be larger than -I (item_size_max {max_item_size})",
        EX_USAGE,
    ),
    (
        lambda a: a.slab_chunk_max > 0 and a.max_item_size % a.slab_chunk_max,
        "-I (item_size_max: {max_item_size}) must be evenly divisible by slab_chunk_max (bytes: {slab_chunk_max})",
        EX_USAGE,
    ),
    (
        lambda a: a.slab_chunk_max > 0 and SLAB_PAGE_SIZE % a.slab_chunk_max,
        f"slab_chunk_max (bytes: {{slab_chunk_max}}) must divide evenly into {SLAB_PAGE_SIZE} (slab_page_size)",
        EX_USAGE,
    ),
    (lambda a: a.slab_sizes_refusal, "{slab_sizes_refusal}", EX_USAGE),
    (
        lambda a: a.hot_lru_pct + a.warm_lru_pct > 80,
        "hot_lru_pct + warm_lru_pct cannot be more than 80% combined", EX_USAGE,
    ),
    (lambda a: a.temp_lru and not a.lru_maintainer, "temporary_ttl requires lru_maintainer to be enabled", EX_USAGE),
    (
        lambda a: a.enable_sasl and a.protocol not in (None, "binary"),
        "ERROR: You cannot allow the ASCII protocol while using SASL.", EX_USAGE,
    ),
    (
        lambda a: a.enable_sasl and a.udp_port,
        "ERROR: Cannot enable UDP while using binary SASL authentication.", EX_USAGE,
    ),
    (
        lambda a: a.auth_file is not None and a.protocol not in (None, "ascii"),
        "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.", EX_USAGE,
    ),
    (lambda a: a.port > 65535, "ERROR: Invalid port number {port}.", EX_USAGE),
    (lambda a: a.enable_ssl and not a.port, "ERROR: You cannot enable SSL without a TCP port.", EX_USAGE),
    (lambda a: a.enable_ssl and not a.tls_cert, "-Z needs a certificate: --tls-cert or -o ssl_chain_cert=", EX_USAGE),
    (
        lambda a: a.auth_file is not None and a.udp_port,
        "Cannot use UDP with ascii authentication enabled (-U 0 to disable)", EX_USAGE,
    ),
    # memcached binds the UDP port (not under -s: then it has no port at all);
    # memcached-lite has no UDP, so it fails as memcached does when that bind fails
    (
        lambda a: a.udp_port and a.unix_socket is None,
        "failed to listen on UDP port {udp_port}: memcached-lite serves no UDP (give -U 0 or leave it out)",
        EX_OSERR,
    ),
)

# the options whose bad value memcached refuses with EX_USAGE (its getopt
# loop's own refusals, and the others' bad values, exit 1)
TYPE_STATUS = {"-B/--protocol": EX_USAGE}


class Parser(argparse.ArgumentParser):
    """argparse, but exiting with memcached's statuses: 1 for an unknown
    option or a missing value (getopt's), TYPE_STATUS's for a bad value;
    `refuse` for CHECKS' rows."""

    def error(self, message):
        status = next((s for name, s in TYPE_STATUS.items() if message.startswith(f"argument {name}:")), FAILURE)
        self.refuse(message, status)

    def refuse(self, message, status):
        self.print_usage(sys.stderr)
        self.exit(status, f"{self.prog}: error: {message}\n")


def parse_extended(values, not_applicable=None):
    """memcached's `-o a=1,b=2` (the option may be repeated) as a dict of
    name -> value (None for a name without `=`, as getsubopt's); the
    suboptions of NOT_APPLICABLE_EXTENDED given are added to the list
    `not_applicable` instead, as (name, value)."""
    options = {}
    for value in values:
        for item in value.split(","):
            name, equals, setting = item.strip().partition("=")
            if not name:
                continue
            if name in NOT_APPLICABLE_EXTENDED and not_applicable is not None:
                not_applicable.append((name, setting if equals else None))
                continue
            if name not in EXTENDED:
                raise argparse.ArgumentTypeError(f'Illegal suboption "{item.strip()}" (known: {", ".join(EXTENDED)})')
            options[name] = setting if equals else None
    return options


def apply_extended(args, given):
    """Set each suboption's attribute: from -o, unless its long option was
    given; else its default."""
    for name, (attribute, convert, default) in EXTENDED.items():
        if not getattr(args, attribute, None):
            setattr(args, attribute, convert(given[name]) if name in given else default)


def slab_chunk_max(suboptions, item_size_max):
    """memcached's slab_chunk_max once its -o suboptions are read in order:
    half a page, slab_chunk_max=N, a whole page under no_chunked_items (and
    no_modern, unless N was given); half a page again for an -I over 1 MiB
    unless N was given."""
    chunk, changed = SLAB_PAGE_SIZE // 2, False
    for name, value in suboptions:
        if name == "slab_chunk_max" and value is not None:
            try:
                chunk, changed = int(value), True
            except ValueError:
                pass  # memcached: "could not parse", and it goes on
        elif name == "no_chunked_items" or (name == "no_modern" and not changed):
            chunk = SLAB_PAGE_SIZE
    if item_size_max > 1 << 20 and not changed:
        chunk = SLAB_PAGE_SIZE // 2
    return chunk


# memcached.h: slab class sizes are 8-byte aligned; 63 classes at most
CHUNK_ALIGN_BYTES, MAX_NUMBER_OF_SLAB_CLASSES = 8, 64


def slab_sizes_refused(text, chunk_size, chunk_max):
    """memcached's _parse_slab_sizes of `-o slab_sizes=a-b-c`: its message
    for the first size it refuses, or None."""
    if not text:
        return "slab_sizes needs a list of sizes"  # memcached exits 64 without a word
    last, count = 0, 0
    for part in (p for p in text.split("-") if p):
        size = c_strtoul(part)
        if size is None or size < chunk_size or size > chunk_max:
            return f"slab size {size or 0} is out of valid range"
        if last >= size:
            return f"slab size {size} cannot be lower than or equal to a previous class size"
        if size <= last + CHUNK_ALIGN_BYTES:
            return f"slab size {size} must be at least {CHUNK_ALIGN_BYTES} bytes larger than previous class"
        last, count = size, count + 1
        if count >= MAX_NUMBER_OF_SLAB_CLASSES - 1:
            return "too many slab classes specified"
    return None


def lru_settings(args, suboptions):
    """What memcached's checks after its getopt loop need of the LRU
    suboptions, read in order: hot_lru_pct, warm_lru_pct (20 and 40),
    temporary_ttl, whether the LRU maintainer runs (lru_maintainer, and off
    with no_lru_maintainer or no_modern), and slab_sizes' text (memcached's
    worker_logbuf_size falls through into slab_sizes: its value is taken
    as one too)."""
    args.hot_lru_pct, args.warm_lru_pct, args.temp_lru, args.lru_maintainer = 20, 40, False, True
    args.slab_sizes = None
    for name, value in suboptions:
        if name in ("hot_lru_pct", "warm_lru_pct"):
            setattr(args, name, atoi(value))
        elif name == "temporary_ttl":
            args.temp_lru = True
        elif name == "lru_maintainer":
            args.lru_maintainer = True
        elif name in ("no_lru_maintainer", "no_modern"):
            args.lru_maintainer = False
        elif name in ("slab_sizes", "worker_logbuf_size"):
            args.slab_sizes = value or ""


def interfaces(given):
    """memcached's settings.inter from each -l in turn: joined with `,`, an
    -l already contained in it (as a substring, strstr) left out; None for none."""
    inter = None
    for value in given:
        if inter is None:
            inter = value
        elif value not in inter:
            inter = f"{inter},{value}"
    return inter


def derive(args, suboptions):
    """The numbers memcached's checks compare, from the options as given:
    -p (11211, or -U's port when only -U is given, as memcached), -m in
    bytes, and the values of the options memcached-lite only names (-t -f -n -N)."""
    if args.port is None:
        args.port = args.udp_port if args.udp_port else 11211
    # memcached's settings.inter (`stats settings`' inter: NULL when -l is not
    # given); where this server listens then is loopback, not every interface
    args.inter = interfaces(args.listen or ())
    args.listen = args.inter or LOOPBACK
    args.memory_bytes = memory_bytes(args.memory_limit)
    args.threads = atoi(args.na_threads) if args.na_threads is not None else 4
    args.factor = atof(args.na_slab_growth_factor) if args.na_slab_growth_factor is not None else 1.25
    args.chunk_size = atoi(args.na_slab_min_size) if args.na_slab_min_size is not None else 48
    args.napi_ids = atoi(args.na_napi_ids) if args.na_napi_ids is not None else None
    args.slab_chunk_max = slab_chunk_max(suboptions, args.max_item_size)
    lru_settings(args, suboptions)
    args.slab_sizes_refusal = args.slab_sizes is not None and slab_sizes_refused(
        args.slab_sizes, args.chunk_size, args.slab_chunk_max
    )


def parser():
    """The argparse parser of OPTIONS."""
    p = Parser(
        prog="python -m reactor",
        description="memcached-lite: a memcached 1.6 text-protocol server whose items "
        "are written through to files and survive restarts.",
    )
    for flags, keywords in OPTIONS:
        p.add_argument(*flags, **keywords)
    group = p.add_argument_group(
        "memcached's options that do not apply here",
        "accepted so that memcached's command lines run unchanged, named in the start-up log, "
        "otherwise ignored (as are -o " + ", ".join(sorted(NOT_APPLICABLE_EXTENDED)[:6]) + ", ...)",
    )
    for flags, takes_value, why in NOT_APPLICABLE:
        keywords = dict(metavar="VALUE") if takes_value else dict(action="store_true")
        group.add_argument(*flags, dest="na_" + flags[-1].lstrip("-").replace("-", "_"), help=why, **keywords)
    # words that are no option: memcached's getopt passes over them, and so it ignores them
    p.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)
    return p


def not_applicable(args):
    """The NOT_APPLICABLE options given, as they were written."""
    given = []
    for flags, takes_value, _ in NOT_APPLICABLE:
        value = getattr(args, "na_" + flags[-1].lstrip("-").replace("-", "_"))
        if value not in (None, False):
            given.append(flags[0] + (" " + value if takes_value else ""))
    return given


def parse_args(argv):
    """The command line, checked: a namespace, or a usage error (memcached's
    exit status: 1, 64 or 71)."""
    p = parser()
    # memcached's --verbose takes a value it ignores (each one is a level more)
    args = p.parse_intermixed_args(["--verbose" if arg.startswith("--verbose=") else arg for arg in argv])
    args.not_applicable = not_applicable(args)
    suboptions = []
    try:
        apply_extended(args, parse_extended(args.extended, suboptions))
    except (argparse.ArgumentTypeError, ValueError) as e:
        p.refuse(f"-o: {e}", FAILURE)
    args.not_applicable += ["-o " + name + ("" if value is None else "=" + value) for name, value in suboptions]
    paths = 0  # ext_path=s so far: memcached sizes pages before it opens a file
    for name, value in suboptions:
        refusal = refused_suboption(name, value)
        if name == "ext_page_size" and paths:
            refusal = "Must specify ext_page_size before any ext_path arguments"
        if refusal:
            p.refuse(refusal, FAILURE)
        paths += name == "ext_path"
    if args.enable_sasl and args.sasl_file is None and os.environ.get("MEMCACHED_SASL_PWDB"):
        try:  # memcached's variable, read when -S is given
            args.sasl_file = sasl_file(os.environ["MEMCACHED_SASL_PWDB"])
        except argparse.ArgumentTypeError as e:
            p.refuse(f"MEMCACHED_SASL_PWDB: {e}", FAILURE)
    derive(args, suboptions)
    for refused, message, status in CHECKS:
        if refused(args):
            p.refuse(message.format_map(vars(args)), status)
    args.data_dir = args.data_dir or default_data_dir(args.port, args.unix_socket)
    return args


def make_settings(args):
    """The protocol's settings (handlers.Settings) the command line gives."""
    # memcached's `inter` is NULL without -l (this server then listens on loopback)
    settings = handlers.Settings(max_connections=args.conn_limit, port=args.port, listen=args.inter)
    settings.verbosity = args.verbose
    settings.shutdown_enabled = args.enable_shutdown
    settings.flush_enabled = not args.disable_flush_all
    settings.watch_enabled = not args.disable_watch
    settings.idle_timeout = args.idle_timeout
    settings.watcher_logbuf_size = args.watcher_logbuf_size
    settings.reqs_per_event = args.max_reqs_per_event
    settings.tcp_backlog = args.listen_backlog
    settings.domain_socket = args.unix_socket
    settings.unix_mask = args.unix_mask
    settings.cas_enabled = not args.disable_cas
    settings.tls_enabled = args.enable_ssl
    settings.tls_cert = args.tls_cert
    settings.tls_key = args.tls_key
    settings.tls_ca = args.tls_ca
    settings.tls_verify_mode = args.tls_verify_mode
    # memcached's defaults: binary under -S, ascii under -Y, else auto
    settings.protocol = args.protocol or ("binary" if args.enable_sasl else "ascii" if args.auth_file else "auto")
    return settings
