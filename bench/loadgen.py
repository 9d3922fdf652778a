"""The Python side of loadgen.c: build it with `cc` (once per version of the
source, into a cache folder under the temp dir, never into the repo), run it,
read its JSON line.

    binary = build()
    fill(binary, port, keys=10000, value_size=100)
    result = run(binary, port, conns=50, depth=1, workload="get90", server_pid=pid)
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loadgen.c")


def compiler():
    """The C compiler's path, or None."""
    return shutil.which("cc") or shutil.which("gcc")


def build(cache_dir=None):
    """Compile loadgen.c unless this version of it is already built; the binary's path."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler: bench/loadgen.c needs `cc` (apt-get install gcc)")
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    top = cache_dir or os.path.join(tempfile.gettempdir(), f"mclite-loadgen-{os.getuid()}")
    folder = os.path.join(top, digest)
    binary = os.path.join(folder, "loadgen")
    if os.access(binary, os.X_OK):
        return binary
    os.makedirs(folder, exist_ok=True)
    tmp = f"{binary}.{os.getpid()}.tmp"
    done = subprocess.run([cc, "-O2", "-Wall", "-o", tmp, SOURCE], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cc failed on {SOURCE}:\n{done.stderr}")
    os.replace(tmp, binary)  # whole or not at all, for a concurrent build
    return binary


def argv(binary, port, **options):
    """loadgen's command line: run(binary, port, value_size=1024) -> --value-size 1024."""
    out = [binary, "--port", str(port)]
    for name, value in options.items():
        if value is None or value is False:
            continue
        out.append("--" + name.replace("_", "-"))
        if value is not True:
            out.append(str(value))
    return out


def _result(done, what):
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {what} failed (status {done.returncode}): {done.stderr.strip()}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"loadgen {what} printed nothing: {done.stderr.strip()}")
    return json.loads(lines[-1])


def fill(binary, port, keys=10000, value_size=100, key_prefix="key:", timeout=600):
    """Set every key once, pipelined; the JSON line ({"filled": ..., ...})."""
    cmd = argv(binary, port, fill=True, keys=keys, value_size=value_size, key_prefix=key_prefix)
    return _result(subprocess.run(cmd, capture_output=True, text=True, timeout=timeout), "--fill")


def run(binary, port, on_mark=None, cpus=None, **options):
    """One measured run; the JSON line as a dict. on_mark("start"|"end") is
    called at the window's start and end (loadgen's --mark-fd), e.g. to
    sample the server's stats at the same moments. cpus: run loadgen on
    those CPUs only."""
    limit = options.get("warmup", 1) + options.get("seconds", 5) + 60
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    if on_mark is None:
        done = subprocess.run(
            argv(binary, port, **options), capture_output=True, text=True, timeout=limit, preexec_fn=pin
        )
        return _result(done, options.get("workload", "run"))
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            argv(binary, port, mark_fd=w, **options), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, pass_fds=(w,), preexec_fn=pin,
        )
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    os.close(w)
    try:
        with os.fdopen(r) as marks:  # EOF when loadgen exits
            for line in marks:
                on_mark(line.strip())
        out, err = proc.communicate(timeout=limit)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return _result(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), options.get("workload", "run"))
