"""The reference loop: a bare CPython selectors server of get and set, the
yardstick of bench/compare.py (not a contestant: keep it this plain). One
recv per readiness, split() parsing, a dict, one send of that recv's replies.

    python bench/refloop.py --port P
"""
import argparse
import selectors
import socket

p = argparse.ArgumentParser(description="the benchmark's reference loop")
p.add_argument("--port", type=int, required=True)
p.add_argument("--host", default="127.0.0.1")
args = p.parse_args()
data, pending = {}, {}
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
                    data[words[1]] = (words[2], buf[end + 2:end + 2 + n])
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
