"""Write a synthetic dump file of N items (100-byte values, half with a one-hour
TTL) to stdout, for measuring `python -m cli load` and, once loaded, `dump`:

    python bench/make_dump.py 100000 > /tmp/100k.dump
    python -m cli -p PORT load --noreply --progress /tmp/100k.dump
    python -m cli -p PORT dump --progress -o /tmp/out.dump
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.dump import Writer  # noqa: E402


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    w = Writer(sys.stdout.buffer, time.time())
    for i in range(count):
        w.item(b"key:%06d" % i, i % 7, 0 if i % 2 else 3600, b"v" * 100)
    w.close()


if __name__ == "__main__":
    main()
