"""The server's command line: memcached's flag names where memcached has the
option, memcached-lite's own long options beside them.

It is data first. OPTIONS is the table of options (flags, then argparse's
keywords), EXTENDED the table of memcached's `-o name=value` suboptions, and
CHECKS the table of what is refused once everything is parsed, each with its
message, in the order they are tried. A new option is a row of OPTIONS (and,
if some values are refused, a row of CHECKS); a new `-o` suboption is a row
of EXTENDED.

    args = parse_args(sys.argv[1:])
    settings = make_settings(args)
"""

import argparse
import os
import ssl
import urllib.parse
import sys

import handlers
from store import DISK_POLICIES, EVERYSEC, LEVELS, METHODS, WATCHDOG

# memcached's ssl_verify_mode: none, request, require, once (as require here)
VERIFY_MODES = {0: ssl.CERT_NONE, 1: ssl.CERT_OPTIONAL, 2: ssl.CERT_REQUIRED, 3: ssl.CERT_REQUIRED}


LICENSE = (
    "memcached-lite: a memcached 1.6.18-compatible server in Python. The protocol it speaks and the "
    "messages it copies are memcached's (BSD 3-clause, Copyright (c) 2003 Danga Interactive, Inc.)."
)


def default_data_dir(port, unix_socket=None):
    """Where items live when --data-dir is not given: one folder per port, or
    per socket path under -s (a -s server and a TCP one on the default port
    must not meet at one data dir; the second would refuse to start)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    if unix_socket is not None:
        return os.path.join(base, "memcached-lite", "unix" + urllib.parse.quote(os.path.abspath(unix_socket), safe=""))
    return os.path.join(base, "memcached-lite", str(port))


def parse_size(text):
    """memcached's -I: bytes, or with a k/m (or g) suffix."""
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


# (flags, argparse keywords): the parser is built from this table, in its order
OPTIONS = (
    (("-p", "--port"), dict(type=int, default=11211, help="TCP port to listen on (default: 11211)")),
    (("-l", "--listen"), dict(default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")),
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
        type=int, default=1024,
        help="max simultaneous connections; more are answered 'ERROR Too many open connections' "
        "and closed (default: 1024)",
    )),
    (("-m", "--memory-limit"), dict(
        type=int, default=64, help="MB of items kept in memory in front of the files (default: 64)",
    )),
    (("-I", "--max-item-size"), dict(
        type=parse_size, default=1 << 20, help="largest item, e.g. 1m or 512k (default: 1m)",
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
        type=int, default=handlers.REQS_PER_EVENT,
        help="commands a connection runs before the others get a turn (default: 20)",
    )),
    (("-b", "--listen-backlog"), dict(
        type=int, default=1024, help="the listening socket's backlog queue limit (default: 1024)",
    )),
    (("-d", "--daemon"), dict(
        action="store_true", help="run as a daemon: the command returns once it has forked (use with -P)",
    )),
    (("-V", "--version"), dict(
        action="version", version=f"memcached {handlers.VERSION}", help="print the version and exit, as memcached",
    )),
    (("-i", "--license"), dict(
        action="version", version=LICENSE, help="print the license and exit, as memcached's -i",
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
        type=int, default=0, help="UDP port: memcached-lite serves no UDP, so only 0 (off, memcached's default)",
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
    lru_segmented no_lru_segmented hot_lru_pct warm_lru_pct hot_max_factor warm_max_factor temporary_ttl
    read_buf_mem_limit slab_reassign no_slab_reassign slab_automove no_slab_automove
    slab_automove_ratio slab_automove_window slab_automove_freeratio slab_chunk_max
    watcher_logbuf_size worker_logbuf_size track_sizes modern no_modern sock_cookie_id
    inline_ascii_response no_inline_ascii_resp
    ext_path ext_page_size ext_wbuf_size ext_threads ext_io_depth ext_item_size ext_item_age
    ext_low_ttl ext_drop_unread ext_recache_rate ext_compact_under ext_drop_under ext_max_frag
    ext_max_sleep ssl_keyformat ssl_ciphers ssl_wbuf_size ssl_session_cache ssl_kernel_tls
    ssl_min_version""".split()
)

# memcached's -o suboptions that memcached-lite has (the others are refused):
# name -> (the attribute it sets, its type, the default). A suboption that
# has a long option too (ssl_chain_cert is --tls-cert) gives way to it.
EXTENDED = {
    "idle_timeout": ("idle_timeout", int, 0),
    "ssl_chain_cert": ("tls_cert", str, None),
    "ssl_key": ("tls_key", str, None),
    "ssl_ca_cert": ("tls_ca", str, None),
    "ssl_verify_mode": ("tls_verify_mode", int, 0),
    # memcached-lite's own, in memcached's manner of tunables
    "fsync_watchdog": ("fsync_watchdog", float, WATCHDOG),
}

# memcached's exit statuses for a refused command line: 1 where it returns 1
# or getopt refuses, 64 (sysexits' EX_USAGE) where it exits EX_USAGE
FAILURE, EX_USAGE = 1, 64

# (refused when true, the message, the exit status), tried in this order once
# all is parsed; the messages and statuses are memcached's where it refuses too
CHECKS = (
    (lambda a: a.prefix_delimiter == b"", "No delimiter specified", FAILURE),
    (lambda a: not 0 < a.port < 65536, "ERROR: Invalid port number {port}.", EX_USAGE),
    (lambda a: a.unix_socket == "", "-s needs the path of the socket file", FAILURE),
    (
        lambda a: a.unix_socket is not None and len(os.fsencode(a.unix_socket)) > UNIX_PATH_MAX,
        f"-s: a unix socket's path is at most {UNIX_PATH_MAX} bytes", FAILURE,
    ),
    (lambda a: a.max_reqs_per_event <= 0, "Number of requests per event must be greater than 0", FAILURE),
    (lambda a: a.udp_port != 0, "-U: memcached-lite serves no UDP; give -U 0 (or leave it out)", EX_USAGE),
    (lambda a: a.conn_limit < 1, "Maximum connections must be greater than 0", FAILURE),
    (lambda a: a.memory_limit < 1, "Cannot set item size limit higher than 1/2 of memory max.", EX_USAGE),
    (lambda a: a.max_item_size < 1024, "Item max size cannot be less than 1024 bytes.", EX_USAGE),
    (lambda a: a.max_item_size > 1 << 30, "Cannot set item size limit higher than a gigabyte.", EX_USAGE),
    (lambda a: a.idle_timeout < 0, "-o idle_timeout must be 0 (off) or a number of seconds", FAILURE),
    (lambda a: not a.fsync_watchdog > 0, "-o fsync_watchdog must be a positive number of seconds", FAILURE),
    (
        lambda a: a.tls_verify_mode not in VERIFY_MODES,
        "Invalid ssl_verify_mode. Use help to see valid options.", FAILURE,
    ),
    (
        lambda a: a.enable_sasl and a.protocol not in (None, "binary"),
        "ERROR: You cannot allow the ASCII protocol while using SASL.", EX_USAGE,
    ),
    (
        lambda a: a.auth_file is not None and a.protocol not in (None, "ascii"),
        "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.", EX_USAGE,
    ),
    (lambda a: a.enable_ssl and not a.tls_cert, "-Z needs a certificate: --tls-cert or -o ssl_chain_cert=", EX_USAGE),
    (
        lambda a: a.tls_verify_mode and not a.tls_ca,
        "-o ssl_verify_mode needs the clients' CA: --tls-ca or -o ssl_ca_cert=", EX_USAGE,
    ),
)

# the options whose bad value memcached refuses with EX_USAGE (its getopt
# loop's own refusals, and the others' bad values, exit 1)
TYPE_STATUS = {"-B/--protocol": EX_USAGE, "-I/--max-item-size": EX_USAGE}


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
    """memcached's `-o a=1,b=2` (the option may be repeated) as a dict; the
    suboptions of NOT_APPLICABLE_EXTENDED given are added to the list
    `not_applicable` instead."""
    options = {}
    for value in values:
        for item in value.split(","):
            name, _, setting = item.strip().partition("=")
            if not name:
                continue
            if name in NOT_APPLICABLE_EXTENDED and not_applicable is not None:
                not_applicable.append("-o " + item.strip())
                continue
            if name not in EXTENDED:
                raise argparse.ArgumentTypeError(f'Illegal suboption "{item.strip()}" (known: {", ".join(EXTENDED)})')
            options[name] = setting
    return options


def apply_extended(args, given):
    """Set each suboption's attribute: from -o, unless its long option was
    given; else its default."""
    for name, (attribute, convert, default) in EXTENDED.items():
        if not getattr(args, attribute, None):
            setattr(args, attribute, convert(given[name]) if name in given else default)


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
    exit status: 1 or 64)."""
    p = parser()
    # memcached's --verbose takes a value it ignores (each one is a level more)
    args = p.parse_args(["--verbose" if arg.startswith("--verbose=") else arg for arg in argv])
    args.not_applicable = not_applicable(args)
    try:
        apply_extended(args, parse_extended(args.extended, args.not_applicable))
    except (argparse.ArgumentTypeError, ValueError) as e:
        p.refuse(f"-o: {e}", FAILURE)
    if args.enable_sasl and args.sasl_file is None and os.environ.get("MEMCACHED_SASL_PWDB"):
        try:  # memcached's variable, read when -S is given
            args.sasl_file = sasl_file(os.environ["MEMCACHED_SASL_PWDB"])
        except argparse.ArgumentTypeError as e:
            p.refuse(f"MEMCACHED_SASL_PWDB: {e}", FAILURE)
    for refused, message, status in CHECKS:
        if refused(args):
            p.refuse(message.format(port=args.port), status)
    args.data_dir = args.data_dir or default_data_dir(args.port, args.unix_socket)
    return args


def make_settings(args):
    """The protocol's settings (handlers.Settings) the command line gives."""
    settings = handlers.Settings(max_connections=args.conn_limit, port=args.port, listen=args.listen)
    settings.verbosity = args.verbose
    settings.shutdown_enabled = args.enable_shutdown
    settings.flush_enabled = not args.disable_flush_all
    settings.watch_enabled = not args.disable_watch
    settings.idle_timeout = args.idle_timeout
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
