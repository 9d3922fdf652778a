"""The server process around its event loop: the start-up sequence (the
command line, the log, the descriptor limit, the TLS context, the store, the
listening socket: TCP, or the unix socket of -s, the pid file), the signals,
and the clean exit (the pid file and the unix socket's file removed).

It knows the loop only as what main() is given: a class built as
`loop(server, listeners, tls_context)` (a list of listening sockets, empty
under -p 0) with run(), stop() and call_soon(work),
so this module never imports the reactor (reactor.main passes its Reactor).
"""

import ctypes
import errno
import logging
import os
import pwd
import re
import resource
import signal
import socket
import ssl
import stat
import sys

import handlers
import logs
import options
from store import FRESH_SPARES, KEPT_FILES, DataDirError, Store

log = logging.getLogger("memcached-lite")

# the open files besides the connections: the store's files, the listener, logs
DESCRIPTOR_RESERVE = 64
# memcached's exit statuses (sysexits'): it cannot listen, or cannot become -u's user
EX_OSERR = 71
EX_NOUSER = 67
# how long a server on an existing socket file has to accept the probe's connect
PROBE_TIMEOUT = 1.0


class SocketInUse(OSError):
    """-s's path is a socket a live server answers on."""


def tls_context(args):
    """The server's ssl context for -Z: TLS 1.2 or later, no renegotiation."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.tls_ca:
        ctx.load_verify_locations(args.tls_ca)
    ctx.verify_mode = options.VERIFY_MODES[args.tls_verify_mode]
    return ctx


def configure_stats(server, args, listeners):
    """Hand -D, -X, -Y and the listening sockets (for `stats conns`) to the protocol."""
    settings = server.settings
    if args.prefix_delimiter is not None:
        settings.prefix_delimiter = args.prefix_delimiter
        settings.detail_enabled = True  # as memcached's -D
    settings.dump_enabled = not args.disable_dumping
    if args.auth_file is not None:
        server.load_auth(args.auth_file)
    if args.enable_sasl:
        if args.sasl_file is not None:
            server.load_sasl(args.sasl_file)
        else:
            server.sasl = []  # no password file: nobody can authenticate
            log.warning("-S without --sasl-file or MEMCACHED_SASL_PWDB: no SASL user can authenticate")
    # `stats conns`' listening rows, one per listener
    server.listeners = [(sock.fileno(), sock.getsockname()) for sock in listeners]
    server.listener = server.listeners[0] if server.listeners else None


def ensure_descriptors(connections):
    """Raise the open-files limit so -c connections fit, as memcached does;
    warn when the hard limit allows -c but not the reserve besides. The
    refusal, or None: memcached sets both limits to -c and exits 71 when
    that fails, so a -c above the hard limit that cannot be raised (no
    CAP_SYS_RESOURCE, or past fs.nr_open) is refused with its words."""
    need = connections + DESCRIPTOR_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and connections > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        except (ValueError, OSError):
            return ("failed to set rlimit for open files. Try starting as root or requesting smaller "
                    "maxconns value.")
        return None
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            log.warning("open-files limit %d is below -c %d plus a reserve", target, connections)
    return None


def kept_files(connections):
    """How many descriptors the store may keep open for writes in place
    (store/inplace.py): the soft open-files limit is first raised, within
    the hard one, to make room for KEPT_FILES beside -c connections and the
    reserve; then what it leaves, at most KEPT_FILES (none: every write
    takes the exchange)."""
    used = connections + DESCRIPTOR_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return KEPT_FILES
    want = used + KEPT_FILES
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            if target > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
        except (ValueError, OSError):
            pass  # the limit stays: fewer kept
    return max(0, min(KEPT_FILES, soft - used))


def write_pidfile(path):
    """-P, as memcached's save_pid: a warning if the file names a running
    process, then the pid written to <path>.tmp and renamed over path (a
    reader never finds it empty). Raises OSError."""
    path = os.fspath(path)
    try:
        with open(path, encoding="ascii") as f:
            old = options.c_strtoul(f.readline())
        if old:
            os.kill(old, 0)
            log.warning("WARNING: The pid file contained the following (running) pid: %d", old)
    except (OSError, ValueError, OverflowError):
        pass  # none, unreadable, or its process gone
    with open(path + ".tmp", "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(path + ".tmp", path)


def remove_pidfile(path):
    try:
        os.unlink(path)
    except OSError as e:
        log.warning("cannot remove the pid file %s: %s", path, e.strerror)


def install_signals(loop, log_handler):
    """SIGTERM, SIGINT and SIGUSR1 stop gracefully; SIGHUP reopens the log
    and reads the -Y auth file and the -S password file again. The handlers only
    ask the loop: a signal may have interrupted it anywhere, even a log write."""

    def on_stop(signum, frame):
        log.info("%s: shutting down", signal.Signals(signum).name)
        loop.stop()

    def on_hup(signum, frame):
        loop.call_soon(lambda: logs.reopen_log(log_handler))
        loop.call_soon(loop.server.reload_auth)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


def open_store(args):
    store = Store(
        args.data_dir,
        memory_limit=args.memory_bytes,  # -m as memcached reads it: -1 is no bound
        item_size_max=args.max_item_size,
        fsync=args.fsync,
        fsync_method=args.fsync_method,
        max_disk=args.max_disk,
        disk_policy=args.disk_policy,
        background_sync=True,
        fresh_spares=FRESH_SPARES,
        kept_files=kept_files(args.conn_limit),
    )
    store.durability.watchdog = args.fsync_watchdog
    return store


def listen(args):
    """The listening sockets, a list: -s's unix socket if given (then no
    TCP, as memcached), else TCP on each of -l's addresses."""
    if args.unix_socket is not None:
        return [listen_unix(args.unix_socket, args.unix_mask, args.listen_backlog)]
    return listen_tcp(args.listen, args.port, args.listen_backlog, tls=args.enable_ssl)


def listen_addresses(interfaces, port, tls=False):
    """memcached's -l list as (host, port) pairs: entries split on `,` and
    `;`, each `host`, `host:port`, `[v6addr]` or `[v6addr]:port`, an IPv6
    address with no brackets taking no port, `*` every interface (host None),
    a `tag[name]:` prefix ignored; raises ValueError with memcached's words
    (a per-listener `proto[...]:` or `notls:` is refused: not here)."""
    for entry in (e for e in re.split("[,;]", interfaces) if e):
        if entry.startswith("notls") and not tls:
            raise ValueError("'notls' option is valid only when SSL is enabled")
        if entry.startswith(("notls", "proto")):
            raise ValueError(f"{entry!r}: a listener's own protocol or TLS (notls, proto[...]) is not supported here")
        if entry.startswith("tag["):
            end = entry.find("]")
            if end < 0:
                raise ValueError(f'Invalid tag in socket config: "{entry[3:]}"')
            if not 1 <= end - 4 <= 8:
                raise ValueError(f'Listener tags must be between 1 and 8 characters: "{entry[4:end]}"')
            entry = entry[end + 2:]  # memcached skips an assumed ':'
        host, the_port = entry, port
        bracketed = entry.startswith("[")
        if bracketed:
            if "]" not in entry:
                raise ValueError(f'Invalid IPV6 address: "{entry}"')
            host, _, entry = entry[1:].partition("]")
        colon = entry.find(":")
        if colon >= 0 and (bracketed or ":" not in entry[colon + 1:]):
            the_port = options.c_strtol(entry[colon + 1:])
            if the_port is None:
                raise ValueError(f'Invalid port number: "{entry[colon + 1:]}"')
            if not bracketed:
                host = entry[:colon]
        yield (None if host == "*" else host), the_port


def listen_tcp(interfaces, port, backlog, tls=False):
    """A listener on every address each of -l's entries resolves to (as
    memcached's server_socket: `localhost` may be 127.0.0.1 and ::1; IPv6
    sockets IPv6 only; an address in use skipped if another of the entry's
    binds); none under -p 0 (memcached then opens no TCP port, whatever -l
    says). Port -1 is one the kernel picks; below it getaddrinfo refuses.
    Raises OSError (ValueError's words as its strerror)."""
    if port == 0:
        return []
    socks = []
    try:
        for host, the_port in listen_addresses(interfaces, port, tls):
            socks += _bind_all(host, the_port, backlog)
    except ValueError as e:
        for sock in socks:
            sock.close()
        raise OSError(errno.EINVAL, str(e)) from None
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _bind_all(host, port, backlog):
    if port < -1:
        raise OSError(errno.EINVAL, "getaddrinfo(): Servname not supported for ai_socktype")
    found = socket.getaddrinfo(host, max(port, 0), socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    bound, in_use = [], None
    try:
        for family, kind, proto, _, address in found:
            sock = socket.socket(family, kind, proto)
            try:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
                sock.listen(backlog)
            except OSError as e:
                sock.close()
                if e.errno != errno.EADDRINUSE:
                    raise
                in_use = e  # memcached: another of the addresses may bind
                continue
            bound.append(sock)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    if not bound:
        raise in_use or OSError(errno.EADDRNOTAVAIL, "no address to bind")
    return bound


def write_port_file(args, listeners):
    """memcached's MEMCACHED_PORT_FILENAME, for a TCP server: each port bound
    (with -p -1, the kernel's pick) as `TCP INET: <port>` (INET6 for IPv6),
    written to <name>.lck and renamed to <name> once complete (an empty
    file under -p 0, as memcached's); nothing under -s."""
    name = os.environ.get("MEMCACHED_PORT_FILENAME")
    if not name or args.unix_socket is not None:
        return
    try:
        with open(name + ".lck", "a", encoding="ascii") as f:
            for sock in listeners:
                kind = "INET6" if sock.family == socket.AF_INET6 else "INET"
                f.write("TCP %s: %d\n" % (kind, sock.getsockname()[1]))
        os.rename(name + ".lck", name)
    except OSError as e:
        log.warning("cannot write MEMCACHED_PORT_FILENAME %s: %s", name, e.strerror)


def claim_socket_path(path):
    """Make way for binding path: a socket file nobody answers on (left by a
    crash, kill -9) is removed; one a live server answers on raises
    SocketInUse. memcached unlinks any socket file there, a live server's
    too, which leaves that server running unreachable: refused here. Any
    other file is left alone (the bind then fails: address in use)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # stale (or gone meanwhile): nothing listens
    except socket.timeout:
        # a listener whose backlog is full is alive (and only busy)
        raise SocketInUse(errno.EADDRINUSE, "a server listens on it (its backlog is full)") from None
    else:
        raise SocketInUse(errno.EADDRINUSE, "another server is listening on it")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    log.info("removed the stale unix socket %s (no server answered on it)", path)


def listen_unix(path, mask, backlog):
    """A unix-domain listener at path whose file has the mode mask & 0777
    (memcached's server_socket_unix: the umask set around the bind, so the
    file never exists with a wider mode)."""
    claim_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(~mask & 0o777)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    try:
        sock.listen(backlog)
    except OSError:
        sock.close()
        os.unlink(path)
        raise
    return sock


def file_identity(path):
    """Which socket file is ours: its device, inode and mtime (an inode freed
    by an unlink is soon reused, for the next file made there; a chmod or
    chown of the socket, as set-ups for a web server's user do, changes the
    ctime, not the mtime), or None if there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def remove_socket_file(path, identity):
    """At the exit: remove the unix socket's file if it is still the one
    this process bound (not one a later server bound at the same path)."""
    if identity is None or file_identity(path) != identity:
        return
    try:
        os.unlink(path)
    except OSError as e:
        log.warning("cannot remove the unix socket %s: %s", path, e.strerror)


def allow_core_dumps():
    """-r, as memcached's: the core file size limit raised to infinity, or
    else to its hard limit. The refusal, or None: memcached exits 71 when
    the limit is then still 0 (no core file could be written)."""
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    for limit in (resource.RLIM_INFINITY, hard):
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (limit, limit))
            break
        except (ValueError, OSError):
            continue
    if resource.getrlimit(resource.RLIMIT_CORE)[0] == 0:
        return "failed to ensure corefile creation"
    return None


def lock_memory():
    """-k: mlockall(MCL_CURRENT | MCL_FUTURE), as memcached; a failure is its
    warning. Under a finite RLIMIT_MEMLOCK (not root) the soft limit is
    raised to the hard one, and if that is finite too nothing is locked:
    MCL_FUTURE would make the interpreter's later allocations fail (a
    MemoryError), where memcached's memory is allocated up front."""
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if os.geteuid() != 0 and hard != resource.RLIM_INFINITY:
        log.warning("warning: -k invalid, mlockall() failed: the locked-memory limit is %d bytes", hard)
        return
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        log.warning("warning: -k invalid, mlockall() failed: %s", os.strerror(ctypes.get_errno()))


# <sys/mman.h> on Linux
MCL_CURRENT, MCL_FUTURE = 1, 2


def drop_privileges(user):
    """-u, as memcached: as root, become `user` (its groups dropped first);
    not root, -u is ignored. Root without -u is only warned of, unlike
    memcached's refusal: containers and CI run as root. The error to
    refuse with, or None."""
    if os.getuid() != 0 and os.geteuid() != 0:
        return None
    if not user:
        log.warning("running as root without -u, which memcached refuses; -u root runs as root without this warning")
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return f"can't find the user {user} to switch to"
    try:
        os.setgroups([])
    except PermissionError as e:
        # memcached: EPERM means already minimally privileged; it goes on
        log.warning("failed to drop supplementary groups: %s", e.strerror)
    except OSError as e:
        return f"failed to drop supplementary groups: {e.strerror}"
    try:
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    except OSError as e:
        return f"failed to assume identity of user {user}: {e.strerror}"
    return None


# the paths of the command line, made absolute before -d leaves the directory
PATH_OPTIONS = ("data_dir", "unix_socket", "pidfile", "log_file", "tls_cert", "tls_key", "tls_ca", "auth_file", "sasl_file")


def daemonize(args):
    """-d, as memcached's daemonize(): fork and let the parent exit 0, a new
    session, the working directory `/`, and stdin/stdout/stderr on
    /dev/null unless -v (memcached keeps them open when verbose). Done
    before the store is opened, so its lock and the everysec helper belong
    to the daemon."""
    for name in PATH_OPTIONS:
        if getattr(args, name, None):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0,) if args.verbose else (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def main(argv, loop):
    """Open the store, listen, serve with loop(server, listener, tls_context)
    until stopped; the exit status (a usage error exits 2 from the parser)."""
    args = options.parse_args(argv)
    try:
        log_handler = logs.configure_logging(args)
    except OSError as e:
        print(f"cannot open the log file {args.log_file}: {e.strerror}", file=sys.stderr)
        return 1
    if args.daemon:
        daemonize(args)
    # memcached's order: -r's core limit, then the open-files limit
    refused = (allow_core_dumps() if args.enable_coredumps else None) or ensure_descriptors(args.conn_limit)
    if refused:
        log.error("%s", refused)
        return EX_OSERR
    context = None
    if args.enable_ssl:
        try:
            context = tls_context(args)
        except (OSError, ssl.SSLError) as e:
            log.error("cannot load the TLS certificate or key: %s", e)
            return 1
    try:
        listeners = listen(args)
    except OSError as e:
        if args.unix_socket is not None:
            log.error("failed to listen on UNIX socket: %s: %s", args.unix_socket, e.strerror or e)
        elif args.inter is not None:
            log.error("failed to listen on one of interface(s) %s: %s", args.inter, e.strerror or e)
        else:
            log.error("failed to listen on TCP port %d: %s (%s)", args.port, e.strerror or e, args.listen)
        return EX_OSERR  # memcached's words and exit status
    owned = file_identity(args.unix_socket) if args.unix_socket is not None else None

    write_port_file(args, listeners)

    def unlisten():
        for sock in listeners:
            sock.close()
        remove_socket_file(args.unix_socket, owned)

    # -u: the port bound as root, the data dir opened as the user
    refused = drop_privileges(args.user)
    if refused:
        unlisten()
        log.error("%s", refused)
        return EX_NOUSER if refused.startswith("can't find") else EX_OSERR
    if args.lock_memory:
        lock_memory()  # after -u, as memcached: the limit that then applies is the user's
    try:
        store = open_store(args)
    except (DataDirError, ValueError) as e:
        unlisten()
        log.error("%s%s", e, f" (as user {args.user}: is the data dir theirs?)" if args.user else "")
        return 1
    if args.pidfile:
        try:
            write_pidfile(args.pidfile)
        except OSError as e:
            # memcached's words, and it goes on serving without one
            log.error("Could not open the pid file %s for writing: %s", args.pidfile + ".tmp", e.strerror)
            args.pidfile = None
    if args.ignored:
        log.warning("arguments that are no option, ignored as memcached ignores them: %s", " ".join(args.ignored))
    if args.not_applicable:
        log.info("memcached options that do not apply here, accepted and ignored: %s", " ".join(args.not_applicable))
    if context is not None and args.tls_verify_mode and not args.tls_ca:
        # memcached starts too: its clients' certificates then never verify
        log.warning("-o ssl_verify_mode=%d without -o ssl_ca_cert (--tls-ca): no client certificate "
                    "can be verified", args.tls_verify_mode)
    if args.unix_socket is not None and context is not None:
        # as memcached: -Z's TLS is for TCP ports; its unix socket speaks in clear
        log.warning("-Z: TLS is not used on the unix socket %s (local clients speak in clear)", args.unix_socket)
        context = None
    server = handlers.Server(store, options.make_settings(args), clock=store.clock)
    running = loop(server, listeners, context)
    configure_stats(server, args, listeners)
    install_signals(running, log_handler)
    log.info(
        "memcached-lite %s listening on %s%s, data in %s, fsync %s (%s)",
        handlers.VERSION,
        listening_on(args, listeners),
        " (TLS)" if context else "",
        store.dir.path,
        store.durability.level,
        store.durability.method,
    )
    try:
        running.run()
    finally:
        if args.pidfile:
            remove_pidfile(args.pidfile)
        if args.unix_socket is not None:
            remove_socket_file(args.unix_socket, owned)
    return 0


def listening_on(args, listeners):
    """Where the start-up line says it listens (the ports bound: -p -1's is
    the kernel's pick)."""
    if args.unix_socket is not None:
        return "unix socket %s (mode %04o)" % (args.unix_socket, args.unix_mask & 0o777)
    if not listeners:
        return "no port (-p 0: no TCP port, as memcached)"
    return ", ".join(
        ("[%s]:%d" if sock.family == socket.AF_INET6 else "%s:%d") % sock.getsockname()[:2] for sock in listeners
    )
