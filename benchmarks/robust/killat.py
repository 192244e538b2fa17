"""Run ``cloud3d`` and SIGKILL it at the N-th call of a chosen filesystem function.

    python -m benchmarks.robust.killat os.replace 3 split RAW --out DS ...   # killed at call 3
    python -m benchmarks.robust.killat os.replace 0 split RAW --out DS ...   # counts only

The function (one of :data:`CALLS`) is wrapped in the main process before the command runs;
its N-th call kills the process with SIGKILL just before the call would run, so the
filesystem is left exactly as the previous calls made it (the way a power cut or an OOM
kill would). Worker processes are not killed by this (they die with their parent). With N = 0
nothing is killed and the number of calls of each function is written as JSON to the file
named by ``CLOUD3D_KILLAT_COUNTS`` when the command ends, so that a trial can pick N among
the calls a full run makes.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import signal
import sys

#: the functions a trial can stop at: name -> (module, attribute path). SQLite writes happen
#: in C, so the results store's own write (one result row) stands for them.
CALLS = {
    "os.replace": ("os", "replace"),
    "os.rename": ("os", "rename"),
    "os.link": ("os", "link"),
    "os.fsync": ("os", "fsync"),
    "os.unlink": ("os", "unlink"),
    "os.mkdir": ("os", "mkdir"),
    "shutil.rmtree": ("shutil", "rmtree"),
    "shutil.copyfile": ("shutil", "copyfile"),
    "ResultsStore.put": ("baselines.bench.store", "ResultsStore.put"),
}
COUNTS_ENV = "CLOUD3D_KILLAT_COUNTS"


def install(kill_call: str | None, kill_at: int) -> dict[str, int]:
    """Wrap every function of :data:`CALLS` to count its calls in this process; the
    ``kill_at``-th call of ``kill_call`` SIGKILLs the process. Returns the live counts."""
    main_pid = os.getpid()
    counts = dict.fromkeys(CALLS, 0)
    for name, (modname, path) in CALLS.items():
        *owners, attr = path.split(".")
        mod = importlib.import_module(modname)
        for o in owners:
            mod = getattr(mod, o)
        real = getattr(mod, attr)

        def wrapped(*a, _real=real, _name=name, **kw):
            if os.getpid() == main_pid:
                counts[_name] += 1
                if _name == kill_call and counts[_name] == kill_at:
                    os.kill(main_pid, signal.SIGKILL)
            return _real(*a, **kw)

        setattr(mod, attr, wrapped)
    return counts


def main(argv: list[str]) -> None:
    call, n, *args = argv
    if call not in CALLS:
        raise SystemExit(f"unknown call {call!r}: one of {', '.join(CALLS)}")
    counts = install(call, int(n))
    out = os.environ.get(COUNTS_ENV)
    if out:
        atexit.register(lambda: open(out, "w").write(json.dumps(counts)))
    from cloud3d.cli import main as cli

    cli(args)


if __name__ == "__main__":
    main(sys.argv[1:])
