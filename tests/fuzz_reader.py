"""Long fuzz run of the reader and the command line (issue 13). Not collected by pytest.

    PYTHONPATH=. python3 tests/fuzz_reader.py --load 5000 --cli 2000 --workers 2

Mutated files (``fuzz_mutations.py``) in four families:

``damaged``   bytes changed, checksum left as written (disk or transfer damage);
``plain``     bytes changed, user block removed (a file without a checksum);
``crafted``   bytes changed, then a fresh checksum (an attacker who rewrites HDF5 structures);
``structure`` members, storage, links, types, values, attributes or metadata changed with
              h5py, then a fresh checksum (an attacker using h5py; canary files as targets);
``network``   a network file (1.1): sizes, delays, step counts, declared datasets, JSON
              edits; then a fresh checksum (issue 20);
``definition`` a carried model definition with a hostile expression or name (1.0 and 1.1
              files), then a fresh checksum (issue 20).

A mutation that raises (the harness's own failure) is counted as ``harness error``, apart
from the reader's outcomes and not as a reader failure.

``--load``: files through ``hh_plugin.export.load`` as a library user calls it: ``load(p)``
for damaged, plain and structure files (HDF5 in the sandboxed child by default since
issue 20), ``load(p, isolate=True)`` for crafted ones. Each load runs in a worker process that
the driver replaces if it dies or hangs, so every outcome is recorded.
``--inprocess``: crafted files through ``load(p, isolate=False)``: what HDF5 does when it
parses such files in the caller's process (the reason the isolated reader exists).
``--cli``: files through ``hh-plugin inspect`` / ``run`` / ``crosscheck`` subprocesses.

Outcome classes: ``record`` (read), ``FormatError: <kind>``, and the failures the issue
forbids: ``other exception``, ``hang``, ``crash``, ``canary`` (data from outside the file),
``memory`` (a load that raised the caller's peak memory by more than ``MEMORY_FACTOR``
times the reader's limit plus ``MEMORY_SLACK_MIB``; the run sets the limit to 64 MiB,
``--max-bytes``), ``traceback`` / ``internal error`` / ``bad exit`` (command line). A
mutation that itself takes more memory than that budget (h5py filling a dataset declared
huge) leaves its load unmeasured (counted apart) and the worker is replaced.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]
                                                   + [p for p in os.environ.get("PYTHONPATH", "")
                                                      .split(os.pathsep) if p])}
FAILURES = ("other exception", "hang", "crash", "canary", "traceback", "internal error",
            "bad exit", "memory")

WORKER = r"""
import json, random, resource, sys, traceback
from pathlib import Path
import numpy as np
from fuzz_mutations import (CANARY, canary_files, mutate_bytes, mutate_definition,
                            mutate_network, mutate_structure, network_seed_file, seed_files,
                            write_bytes_variant)
from hh_plugin.export import FormatError, load
from hh_plugin.export import NetworkRecord, load_any
work = Path(sys.argv[1])
seeds = [(p.name, p.read_bytes()) for p in seed_files(work / "seeds")]
network = network_seed_file(work / "seeds")
seeds.append((network.name, network.read_bytes()))
canaries = canary_files(work)
def peak_mib(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB
base = peak_mib()
print("READY", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    rng = random.Random(job["seed"])
    family, mode = job["family"], job["mode"]
    name, data = seeds[-1 if family == "network" else
                       job["which"] % (len(seeds) if family == "definition" else 4)]
    path = work / f"w{job['worker']}-{name}"
    try:  # a failure here is the harness's, not the reader's: reported apart
        if family == "structure":
            path.write_bytes(data)
            ops = mutate_structure(path, rng, canaries)
        elif family in ("network", "definition"):
            path.write_bytes(data)
            ops = (mutate_network if family == "network" else mutate_definition)(path, rng)
        else:
            write_bytes_variant(path, mutate_bytes(data, rng), family)
            ops = family
    except Exception as exc:
        print(json.dumps({"started": job["id"]}), flush=True)
        print(json.dumps({"id": job["id"], "outcome": "harness error",
                          "message": f"{type(exc).__name__}: {exc}"[:300]}), flush=True)
        continue
    print(json.dumps({"started": job["id"]}), flush=True)
    before = peak_mib()  # a mutation may itself take memory (h5py writing huge datasets)
    options = {"isolate": True, "timeout": 20} if mode == "isolated" else \
        {"isolate": False} if mode == "inprocess" else {"timeout": 20}
    try:
        record = load_any(path, **options)
        if isinstance(record, NetworkRecord):
            print(json.dumps({"id": job["id"], "outcome": "record", "ops": ops,
                              "grew_mib": peak_mib() - base,
                              "mutation_mib": before - base}), flush=True)
            continue
        arrays = [np.asarray(v) for v in record.spec.parameters.values()]
        arrays += list((record.state or {}).values()) + list((record.traces or {}).values())
        arrays += [] if record.input is None else [record.input]
        hit = any(a.dtype.kind == "f" and np.any(a == CANARY) for a in arrays)
        result = {"outcome": "canary" if hit else "record"}
    except FormatError as exc:
        result = {"outcome": "FormatError", "message": exc.reason}
    except BaseException as exc:
        result = {"outcome": "other exception",
                  "message": f"{type(exc).__name__}: {exc}"[:300],
                  "trace": traceback.format_exc()[-800:]}
    result.update(id=job["id"], ops=ops, grew_mib=peak_mib() - base,
                  mutation_mib=before - base)
    print(json.dumps(result), flush=True)
"""

#: The reader's limit during the run (``HH_PLUGIN_MAX_READ_BYTES``), small so that the
#: memory check below means something: a load may grow the caller's peak memory by at most
#: ``MEMORY_FACTOR`` times the limit plus ``MEMORY_SLACK_MIB`` (the arrays come back from
#: the child as an archive, are checked in copies, and a network is built from them).
DEFAULT_MAX_BYTES = 64 << 20
MEMORY_FACTOR = 4
MEMORY_SLACK_MIB = 256


def message_class(message: str) -> str:
    """'FormatError: <the message's first words, numbers and quotes removed>'."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", message)
    text = re.sub(r"\([^)]*\)?", "", text)
    text = re.sub(r"[-+]?\d[\d.e+-]*", "N", text)
    text = re.sub(r"/[\w/]+", "/PATH", text)
    return "FormatError: " + " ".join(text.split()[:9])


class Worker:
    """A reader worker process; replaced when it dies or a job takes too long."""

    def __init__(self, index: int, work: Path):
        self.index, self.work = index, work / f"worker{index}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(self.work)], env=ENV,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc, self.lines), daemon=True).start()
        assert self._next(300) == "READY"

    @staticmethod
    def _pump(proc, lines):
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    def _next(self, timeout):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return "TIMEOUT"

    def run(self, job: dict, timeout: float) -> dict:
        job = {**job, "worker": self.index}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        started = self._next(300)
        if started is None or started == "TIMEOUT":  # before the load: the harness's own
            return self._restart(job, "harness error", "the worker died while mutating")
        line = self._next(timeout)
        if line == "TIMEOUT":
            return self._restart(job, "hang", f"no result within {timeout} s")
        if line is None:
            return self._restart(job, "crash", f"exit status {self.proc.wait()}")
        result = json.loads(line)
        budget = MEMORY_FACTOR * int(ENV["HH_PLUGIN_MAX_READ_BYTES"]) / 2**20 + MEMORY_SLACK_MIB
        if result.get("mutation_mib", 0) > budget:
            # the harness's own mutation raised this process's high-water mark, so the load
            # cannot be measured: noted apart, and a fresh worker takes the next job
            result["harness_memory"] = True
            self._restart(job, "", "")
        elif result.get("grew_mib", 0) > budget:
            result["message"] = (f"{result['outcome']} after the caller's peak memory grew by "
                                 f"{result['grew_mib']:.0f} MiB (budget {budget:.0f} MiB)")
            result["outcome"] = "memory"
        return result

    def _restart(self, job, outcome, message):
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self.start()
        return {"id": job["id"], "outcome": outcome, "message": f"{message} (worker {code})"}

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def load_phase(count, mode_of_family, families, workers, work, seed, timeout, log):
    jobs = queue.Queue()
    rng = random.Random(seed)
    for i in range(count):
        family = families[i % len(families)]
        jobs.put({"id": i, "seed": rng.getrandbits(48), "which": rng.randrange(5),
                  "family": family, "mode": mode_of_family[family]})
    results = []
    lock = threading.Lock()

    def drive(index):
        worker = Worker(index, work)
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                break
            result = worker.run(job, timeout)
            result.update(family=job["family"], mode=job["mode"], seed=job["seed"],
                          which=job["which"])
            with lock:
                results.append(result)
                log(result, len(results), count)
        worker.close()

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def cli_phase(count, workers, work, seed, log):
    from fuzz_mutations import canary_files, mutate_bytes, seed_files, write_bytes_variant

    seeds = [(p.name, p.read_bytes()) for p in seed_files(work / "cli-seeds")]
    canary_files(work)
    valid_result = work / "cli-seeds" / "result.h5"
    rng = random.Random(seed + 1)
    jobs = queue.Queue()
    families = ("damaged", "crafted", "plain", "structure")
    for i in range(count):
        command = rng.choices(("inspect", "run", "crosscheck"), (0.6, 0.25, 0.15))[0]
        jobs.put({"id": i, "seed": rng.getrandbits(48), "which": rng.randrange(4),
                  "family": families[i % 4], "command": command})
    results, lock = [], threading.Lock()

    def drive(index):
        d = work / f"cli{index}"
        d.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                break
            r = random.Random(job["seed"])
            name, data = seeds[job["which"]]
            path = d / f"in-{name}"
            if job["family"] == "structure":
                path.write_bytes(data)
                problem = _mutate_in_a_child(path, job["seed"], work)
                if problem is not None:  # the harness's failure, reported apart
                    result = {"outcome": "harness error", "message": problem, "id": job["id"],
                              "family": job["family"], "command": job["command"]}
                    with lock:
                        results.append(result)
                        log(result, len(results), count)
                    continue
            else:
                write_bytes_variant(path, mutate_bytes(data, r), job["family"])
            out = d / "out.h5"
            if out.exists():
                out.unlink()
            argv = {"inspect": ["inspect", path],
                    "run": ["run", "--backend", "torch", path, "-o", out],
                    "crosscheck": ["crosscheck", path, valid_result]}[job["command"]]
            start = time.perf_counter()
            try:
                proc = subprocess.run([sys.executable, "-m", "hh_plugin.cli", *map(str, argv)],
                                      env=ENV, capture_output=True, timeout=400,
                                      stdin=subprocess.DEVNULL)
                result = classify_cli(proc, job["command"])
            except subprocess.TimeoutExpired:
                result = {"outcome": "hang", "message": "no exit within 400 s"}
            result.update(id=job["id"], family=job["family"], command=job["command"],
                          seed=job["seed"], which=job["which"],
                          seconds=round(time.perf_counter() - start, 2))
            with lock:
                results.append(result)
                log(result, len(results), count)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


MUTATE = r"""
import random, sys
from pathlib import Path
from fuzz_mutations import mutate_structure
work = Path(sys.argv[3])  # the canaries the driver made (canary_files)
canaries = (work / "canary.bin", work / "canary.h5", work / "canary.fifo")
mutate_structure(Path(sys.argv[1]), random.Random(int(sys.argv[2])), canaries)
"""


def _mutate_in_a_child(path, seed, work, timeout=120):
    """A structural mutation of ``path`` in a child process (h5py can block: a mutation
    that points a dataset at the canary FIFO waits for a reader), or the reason it failed."""
    try:
        proc = subprocess.run([sys.executable, "-c", MUTATE, str(path), str(seed), str(work)],
                              env=ENV, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"mutation did not finish within {timeout} s"
    if proc.returncode != 0:
        return f"mutation failed: {proc.stderr.strip().splitlines()[-1:]}"
    return None


def classify_cli(proc, command) -> dict:
    from fuzz_mutations import CANARY

    try:  # the command line must write valid UTF-8 text
        proc.stdout, proc.stderr = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {"outcome": "bad exit", "message": f"output is not UTF-8: {exc}; "
                f"stdout {proc.stdout[-200:]!r} stderr {proc.stderr[-300:]!r}"}
    err = proc.stderr.strip()
    lines = [line for line in err.splitlines() if not line.startswith("hh-plugin: warning:")]
    if proc.returncode < 0:
        return {"outcome": "crash", "message": f"signal {-proc.returncode}"}
    if "Traceback" in err:
        return {"outcome": "traceback", "message": err[-500:]}
    if f"{CANARY:g}" in proc.stdout:
        return {"outcome": "canary", "message": proc.stdout[-300:]}
    if proc.returncode == 3:
        return {"outcome": "internal error", "message": err}
    if proc.returncode in (0, 1) and not lines:
        return {"outcome": f"exit {proc.returncode}"}
    if proc.returncode == 2 and len(lines) == 1 and \
            lines[0].startswith(f"hh-plugin {command}: error:"):
        reason = lines[0].split(": error: ", 1)[1]
        reason = reason.split(": ", 1)[1] if reason.startswith("/") else reason
        return {"outcome": "exit 2", "message": reason}
    return {"outcome": "bad exit", "message": f"status {proc.returncode}: {err[-300:]}"}


def summarise(results, label):
    outcomes = collections.Counter()
    classes = collections.Counter()
    for r in results:
        outcome = r["outcome"]
        key = outcome
        if outcome in ("FormatError", "exit 2"):
            key = message_class(r.get("message", ""))
        outcomes[outcome if outcome not in ("FormatError",) else "FormatError"] += 1
        classes[key] += 1
    failures = [r for r in results if r["outcome"] in FAILURES]
    print(f"\n== {label}: {len(results)} files")
    grew = [r["grew_mib"] for r in results if "grew_mib" in r and not r.get("harness_memory")]
    if grew:
        unmeasured = sum(1 for r in results if r.get("harness_memory"))
        print(f"  caller's peak memory growth over a load: at most {max(grew):.0f} MiB "
              f"({len(grew)} loads measured; {unmeasured} not, their mutation having taken "
              f"more than the budget itself)")
    for name, n in outcomes.most_common():
        print(f"  {name:<20} {n}")
    print("  message classes:")
    for name, n in classes.most_common(25):
        print(f"    {n:6d}  {name}")
    if failures:
        print(f"  FAILURES: {len(failures)}")
        for r in failures[:20]:
            print("   ", json.dumps(r)[:400])
    return {"files": len(results), "outcomes": dict(outcomes), "classes": dict(classes),
            "failures": failures}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=int, default=5000, help="files through load()")
    parser.add_argument("--inprocess", type=int, default=0,
                        help="crafted files through load(isolate=False)")
    parser.add_argument("--cli", type=int, default=2000, help="files through the CLI")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", help="write the summary as JSON here")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help="the reader's limit, HH_PLUGIN_MAX_READ_BYTES (bytes)")
    args = parser.parse_args()
    ENV["HH_PLUGIN_MAX_READ_BYTES"] = str(args.max_bytes)
    work = Path(tempfile.mkdtemp(prefix="hh_fuzz_"))
    start = time.time()

    def log(result, done, total):
        if done % 250 == 0 or result["outcome"] in FAILURES:
            print(f"  [{time.time() - start:7.0f} s] {done}/{total} "
                  f"{result['outcome']} {result.get('message', '')[:120]}", flush=True)

    report = {"seed": args.seed}
    print(f"work directory {work}", flush=True)
    if args.load:
        modes = {"damaged": "default", "plain": "default", "crafted": "isolated",
                 "structure": "default", "network": "default", "definition": "default"}
        results = load_phase(args.load, modes, list(modes), args.workers, work, args.seed,
                             120, log)
        report["load"] = summarise(results, "load()")
        for family in modes:
            report[f"load/{family}"] = summarise([r for r in results
                                                  if r["family"] == family],
                                                 f"load() {family} ({modes[family]})")
    if args.inprocess:
        results = load_phase(args.inprocess, {"crafted": "inprocess"}, ["crafted"],
                             args.workers, work, args.seed + 7, 30, log)
        report["inprocess"] = summarise(results, "load(isolate=False) on crafted bytes")
    if args.cli:
        results = cli_phase(args.cli, args.workers, work, args.seed, log)
        report["cli"] = summarise(results, "hh-plugin")
        for command in ("inspect", "run", "crosscheck"):
            summarise([r for r in results if r["command"] == command], f"hh-plugin {command}")
    report["seconds"] = round(time.time() - start)
    print(f"\ntotal {report['seconds']} s")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1, default=str))
    forbidden = sum(len(v["failures"]) for k, v in report.items()
                    if isinstance(v, dict) and "failures" in v and k != "inprocess")
    return 1 if forbidden else 0


if __name__ == "__main__":
    sys.exit(main())
