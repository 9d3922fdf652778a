"""The reference loop: a bare CPython selectors server of get and set, the
yardstick of bench/compare.py (not a contestant: keep it this plain). One
recv per readiness, split() parsing, a dict, one send of that recv's replies.

With --data DIR it is the write-through reference loop: the same, plus the
least a file-per-key store must do before it answers a set, done plainly: the
record (flags and value) written into a spare file (an old record's inode) and
swapped with the key's file by renameat2(RENAME_EXCHANGE), after which the
old record's inode is the next spare; a key's first write creates its file.
Nothing else: no checksum, no barrier, no cache bound, no reading back.

    python bench/refloop.py --port P [--data DIR]
"""
import argparse
import ctypes
import hashlib
import os
import selectors
import socket

p = argparse.ArgumentParser(description="the benchmark's reference loop")
p.add_argument("--port", type=int, required=True)
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--data", help="write every set through to files in this folder")
args = p.parse_args()
data, pending = {}, {}
if args.data:
    renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    spares, made = [], [0]
    for i in range(256):
        os.makedirs(os.path.join(args.data, "%02x" % i), exist_ok=True)
    os.makedirs(os.path.join(args.data, "tmp"), exist_ok=True)

    def write_through(key, flags, value):
        path = os.path.join(args.data, key_path(key)).encode()
        record = flags + b" " + value
        if key not in data:  # a first write creates its file
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, record)
            os.close(fd)
            return
        if spares:
            spare = spares.pop()
        else:
            made[0] += 1
            spare = os.path.join(args.data, "tmp", str(made[0])).encode()
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
        os.close(fd)
        if renameat2(-100, spare, -100, path, 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
            raise OSError(ctypes.get_errno(), "renameat2")
        spares.append(spare)  # it holds the old record now

    def key_path(key):
        digest = hashlib.blake2b(key, digest_size=16).hexdigest()
        return digest[:2] + "/" + digest
sel = selectors.DefaultSelector()
listener = socket.create_server((args.host, args.port), backlog=1024)
listener.setblocking(False)
sel.register(listener, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is listener:
            c, _ = listener.accept()  # blocking: sendall below, recv only when ready
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sel.register(c, selectors.EVENT_READ)
            pending[c] = b""
            continue
        try:
            chunk = s.recv(65536)
            buf, pos, out = pending[s] + chunk, 0, []
            while chunk and (end := buf.find(b"\r\n", pos)) >= 0:
                words = buf[pos:end].split()
                if words and words[0] == b"get":
                    for k in words[1:]:
                        if (item := data.get(k)) is not None:
                            out.append(b"VALUE %s %s %d\r\n%s\r\n" % (k, item[0], len(item[1]), item[1]))
                    out.append(b"END\r\n")
                elif len(words) >= 5 and words[0] == b"set":
                    n = int(words[4])
                    if len(buf) < end + 4 + n:
                        break  # the data line is not all here yet
                    value = buf[end + 2:end + 2 + n]
                    if args.data:
                        write_through(words[1], words[2], value)
                    data[words[1]] = (words[2], value)
                    end += 2 + n
                    out.append(b"STORED\r\n")
                else:
                    out.append(b"ERROR\r\n")
                pos = end + 2
            pending[s] = buf[pos:]
            if out:
                s.sendall(b"".join(out))
        except (OSError, ValueError):
            chunk = b""
        if not chunk:  # the client left (or broke the protocol): forget it
            sel.unregister(s)
            s.close()
            del pending[s]
