"""Time TaskFlow on linear flows of no-op tasks; run by engine_bench.py in TaskFlow's venv.

Usage: python taskflow_linear.py KIND SIZE [SIZE ...] ; KIND is memory or sqlite.
Prints one JSON object: size -> {"build": seconds, "run": seconds}.
"""

import contextlib
import json
import os
import sys
import tempfile
import time

from taskflow import engines, task
from taskflow.patterns import linear_flow
from taskflow.persistence import backends


class Noop(task.Task):
    def execute(self):
        return None


def backend_for(kind, directory):
    if kind == "memory":
        conf = {"connection": "memory://"}
    else:
        conf = {"connection": "sqlite:///" + os.path.join(directory, "tf.db")}
    backend = backends.fetch(conf)
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    return backend


def main():
    kind, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
    out = {}
    for size in sizes:
        with tempfile.TemporaryDirectory() as directory:
            backend = backend_for(kind, directory)
            start = time.perf_counter()
            flow = linear_flow.Flow("f").add(*(Noop(f"t{i}") for i in range(size)))
            engine = engines.load(flow, backend=backend)
            engine.compile()
            engine.prepare()
            built = time.perf_counter()
            engine.run()
            done = time.perf_counter()
            out[size] = {"build": built - start, "run": done - built}
            with contextlib.suppress(Exception):
                backend.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
