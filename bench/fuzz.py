"""Fuzzing campaign over every parser of untrusted input -> bench/results/fuzz.json.

    nice -n 10 .venv/bin/python bench/fuzz.py [--inputs 100000] [--targets a,b]
        [--file-import-seconds 480] [--api-examples 300]
        [--api-url URL --api-header 'X-API-Key: KEY']   # another service, e.g. the ground app

Engine: atheris (libFuzzer, coverage-guided over terrafix's own code and the mcap reader) when
it imports, else a random-mutation engine over the same seeds. Each target runs in its own
worker process (`--worker NAME`) with a per-input timeout (`--timeout-s` CPU seconds, a
wall-clock backstop of 6x for an input that blocks; libFuzzer's own under atheris: a hang)
and RSS limit (`--rss-limit-mb`); an input that raises outside the target's documented
exception family, or a documented error that does not name its input, is a crash. A worker that
dies on a timeout or the memory limit is counted (hang / crash) and restarted for the remaining
inputs. Each input is written to build/fuzz/inflight/<target>.input before it runs, so a hang,
a kill or a native crash leaves it behind; every crashing input is kept as
build/fuzz/crashes/<target>/<sha1> and every hanging one as build/fuzz/hangs/<target>/<sha1>
(git-ignored), each with a .txt giving what happened and the command that runs it again:
`python bench/fuzz.py --reproduce <target> <file>` (exit 0 handled, 1 crash, 2 hang).

Targets (tests/fuzz/targets.py): inbound MAVLink on a signing link and on an unsigned side
channel (raw datagrams, streams cut at random, well-formed frames with random fields that are
truncated, get a wrong CRC, link id or signature, a stale or replayed timestamp), MSP v2,
tile JPEG checks, MBTiles and GeoTIFF provisioning, the onboard TOML config and scenario
loaders, the MCAP flight-log reader on torn and garbled segments, the upload batch-manifest
and session-certificate parsers; plus Schemathesis against the ground service's OpenAPI
(its upload, operator and provider routes on a real TLS server; or `--api-url`). Byte-level
parsers get `--inputs` each; the GeoTIFF import (a whole provisioning with GDAL and
journaled tile writes per input, ~0.1 s) gets a time budget.

Also measured: `takeoff_load_s`, the onboard program's take-off with the full manifest v2
verification on the demo cache (build/cache-dgsamples-wv2, made by `terrafix demo`): cache
verified, map features and models loaded and warm, against the simulated FC with the signing
handshake (median of --takeoff-runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]
OUT = REPO / "bench" / "results" / "fuzz.json"
WORK = REPO / "build" / "fuzz"
FILE_IMPORT_TARGETS = ("geotiff_provisioning", "mbtiles_provisioning")
WALL_LIMIT_FACTOR = 6  # wall-clock backstop of the per-input CPU-time limit (_mutation_loop)
"""Whole provisionings per input (GDAL or SQLite open, tile decode/encode, journaled store
writes: 20-100 ms each here): run for a time budget, not an input count."""


# --- kept inputs ------------------------------------------------------------------------------
def _inflight_path(name: str) -> Path:
    """Where a worker writes each input before running it (bench/fuzz.py module docstring)."""
    return WORK / "inflight" / f"{name}.input"


def _keep_input(name: str, kind: str, data: bytes, why: str) -> Path:
    """Keep a crashing / hanging input as build/fuzz/{crashes,hangs}/<target>/<sha1>, with a .txt
    beside it saying what happened and the command that runs it again."""
    folder = WORK / {"crash": "crashes", "hang": "hangs"}[kind] / name
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()
    path = folder / digest
    path.write_bytes(data)
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    (folder / f"{digest}.txt").write_text(
        f"target: {name}\n{kind}: {why}\nbytes: {len(data)}\nreproduce:\n"
        f"  python bench/fuzz.py --reproduce {name} {rel}\n")
    return path


def _reproduce(name: str, path: Path, timeout_s: float) -> int:
    """Run one kept input through its target once, in this process; print the verdict.
    Exit code 0: handled; 1: crash; 2: over the per-input limit (a hang: timeout_s CPU
    seconds, or WALL_LIMIT_FACTOR times that of wall-clock time, as in the campaign)."""
    from tests.fuzz import targets as T

    data = path.read_bytes()
    target = T.target(name).open(T.scratch_dir(name))

    def on_alarm(sig, _frame):
        clock = "CPU" if sig == signal.SIGPROF else "wall-clock"
        limit = timeout_s * (1 if sig == signal.SIGPROF else WALL_LIMIT_FACTOR)
        print(f"HANG: {name} still running after {limit} {clock} s on {path}", file=sys.stderr)
        os._exit(2)

    def cpu_s() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGPROF, on_alarm)
    signal.setitimer(signal.ITIMER_PROF, timeout_s)
    signal.setitimer(signal.ITIMER_REAL, timeout_s * WALL_LIMIT_FACTOR)
    t0, c0 = time.perf_counter(), cpu_s()
    try:
        refused = target.run(data)
    except T.FuzzCrashError as exc:
        print(f"CRASH after {time.perf_counter() - t0:.2f} s: {exc}")
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)
    print(f"OK: handled in {time.perf_counter() - t0:.2f} s wall-clock, {cpu_s() - c0:.2f} s "
          f"CPU ({len(data)} bytes)" + (f", refused with {refused}" if refused else ""))
    return 0


# --- worker (one target, one process) ---------------------------------------------------------
def _worker(args: argparse.Namespace) -> None:
    name, stats_path = args.worker, Path(args.stats)
    corpus = WORK / "corpus" / name
    stats = {"inputs": 0, "crashes": 0, "unclear_errors": 0, "max_input_s": 0.0,
             "crash_examples": [], "engine": ""}
    seen: set[str] = set()
    saved = [time.monotonic()]

    def save() -> None:
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, stats_path)

    def run_factory():
        from tests.fuzz import targets as T

        t = T.target(name).open(T.scratch_dir(name))
        corpus.mkdir(parents=True, exist_ok=True)
        for s in t.seeds(T.scratch_dir(name + "-seeds")):
            (corpus / hashlib.sha1(s).hexdigest()).write_bytes(s)
        return t, T.FuzzCrashError, T.UnclearError

    inflight = _inflight_path(name)
    inflight.parent.mkdir(parents=True, exist_ok=True)

    def one(data: bytes) -> None:
        # on disk before it runs: a hang, a kill or a native crash leaves it behind for the
        # parent to keep (one overwrite per input, no fsync: a killed process's writes stay)
        fd = os.open(inflight, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        t0 = time.perf_counter()
        try:
            target.run(data)
        except crash_type as exc:
            stats["crashes"] += 1
            if isinstance(exc, unclear_type):
                stats["unclear_errors"] += 1
            key = str(exc)[:160]
            if key not in seen and len(seen) < 50:
                seen.add(key)
                stats["crash_examples"].append(key)
            _keep_input(name, "crash", data, str(exc))
            save()
        stats["max_input_s"] = max(stats["max_input_s"], time.perf_counter() - t0)
        stats["inputs"] += 1
        now = time.monotonic()
        if stats["inputs"] % 500 == 0 or stats["inputs"] >= args.runs or now > saved[0] + 2:
            saved[0] = now
            save()

    try:
        import atheris
    except ImportError:
        atheris = None
    if atheris is not None and not args.mutate:
        stats["engine"] = f"atheris {getattr(atheris, '__version__', '')}".strip()
        with atheris.instrument_imports(include=["terrafix"]):
            target, crash_type, unclear_type = run_factory()
        save()
        atheris.Setup([sys.argv[0], str(corpus), f"-runs={args.runs}",
                       f"-timeout={int(args.timeout_s)}", f"-rss_limit_mb={args.rss_limit_mb}",
                       "-max_len=8192", f"-seed={args.seed}",
                       f"-artifact_prefix={WORK / 'artifacts' / name}-"], one)
        (WORK / "artifacts").mkdir(parents=True, exist_ok=True)
        atheris.Fuzz()
    else:
        stats["engine"] = ("random mutation of the seed corpus" if atheris is not None
                           else "random mutation of the seed corpus (atheris not installed)")
        target, crash_type, unclear_type = run_factory()
        _mutation_loop(corpus, one, args)
    save()


def _mutation_loop(corpus: Path, one, args: argparse.Namespace) -> None:
    """Random byte mutations (flip, insert, delete, splice, truncate) of the corpus (the seeds
    and whatever an earlier atheris run added for new coverage), with a per-input alarm (an
    input over the timeout ends the worker like libFuzzer's timeout) and the RSS limit.

    The timeout is CPU time of the worker (all its threads, ITIMER_PROF), with a wall-clock
    backstop of WALL_LIMIT_FACTOR times it for an input that blocks without computing: on a
    machine shared with other jobs, wall-clock time alone called a 2.6 s GeoTIFF (a sparse
    24 x 54296 px strip, 2760 tiles) a hang at 10 s."""
    rng = random.Random(args.seed)
    seeds = [p.read_bytes() for p in sorted(corpus.iterdir())] or [b""]

    def on_alarm(sig, _frame):
        clock = "CPU" if sig == signal.SIGPROF else "wall-clock"
        limit = args.timeout_s * (1 if sig == signal.SIGPROF else WALL_LIMIT_FACTOR)
        print(f"==ERROR: libFuzzer: timeout after {limit} {clock} seconds", file=sys.stderr)
        os._exit(70)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGPROF, on_alarm)
    for i in range(args.runs):
        if i % 500 == 0 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 \
                > args.rss_limit_mb:
            print(f"==ERROR: libFuzzer: out-of-memory (over {args.rss_limit_mb} MB)",
                  file=sys.stderr)
            os._exit(71)
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            if op < 0.35 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op < 0.55:
                data[rng.randrange(len(data) + 1):0] = rng.randbytes(rng.randint(1, 16))
            elif op < 0.75 and data:
                i = rng.randrange(len(data))
                del data[i:i + rng.randint(1, 32)]
            elif op < 0.9:
                other = rng.choice(seeds)
                data += other[rng.randrange(len(other) + 1):]
            else:
                del data[rng.randrange(len(data) + 1):]
        signal.setitimer(signal.ITIMER_PROF, args.timeout_s)
        signal.setitimer(signal.ITIMER_REAL, args.timeout_s * WALL_LIMIT_FACTOR)
        one(bytes(data[:8192]))
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)


# --- campaign -------------------------------------------------------------------------------
def _run_target(name: str, inputs: int, args: argparse.Namespace,
                seconds: float | None) -> dict:
    """Run workers until `inputs` are done (or `seconds` pass); hangs and deaths counted."""
    stats_path = WORK / f"{name}.stats.json"
    log_path = WORK / f"{name}.log"
    done, crashes, unclear, hangs, ooms, rss_mb, max_input_s = 0, 0, 0, 0, 0, 0.0, 0.0
    examples: list[str] = []
    engine = ""
    t0 = time.perf_counter()
    restarts = 0
    inflight = _inflight_path(name)
    kept: list[str] = []
    while done < inputs and restarts <= args.max_restarts:
        stats_path.unlink(missing_ok=True)
        inflight.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
               "--runs", str(inputs - done + 600), "--stats", str(stats_path),
               "--timeout-s", str(args.timeout_s), "--rss-limit-mb", str(args.rss_limit_mb),
               "--seed", str(args.seed + restarts)] + (["--mutate"] if args.mutate else [])
        with log_path.open("a") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=REPO)
            deadline = None if seconds is None else t0 + seconds
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    proc.send_signal(signal.SIGTERM)
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                if int(time.perf_counter() - t0) % 30 == 0:
                    _progress(name, stats_path, done, inputs, t0)
                time.sleep(1.0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss_mb = max(rss_mb, usage.ru_maxrss / 1024.0)
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
        done += int(stats.get("inputs", 0))
        crashes += int(stats.get("crashes", 0))
        unclear += int(stats.get("unclear_errors", 0))
        max_input_s = max(max_input_s, float(stats.get("max_input_s", 0.0)))
        examples += stats.get("crash_examples", [])
        engine = stats.get("engine", engine)
        tail = log_path.read_text(errors="replace")[-4000:]
        if deadline is not None and time.perf_counter() > deadline:
            break
        died = None
        if "libFuzzer: timeout" in tail and proc.returncode != 0:
            hangs += 1
            died = ("hang", f"over the per-input limit ({args.timeout_s} s CPU, "
                            f"{args.timeout_s * WALL_LIMIT_FACTOR} s wall-clock)")
        elif "out-of-memory" in tail and proc.returncode != 0:
            ooms += 1
            died = ("crash", f"out of memory (over {args.rss_limit_mb} MB)")
        elif proc.returncode not in (0, None) and done < inputs:
            crashes += 1
            examples.append(f"worker exited with {proc.returncode}: {tail[-300:]}")
            died = ("crash", f"worker exited with {proc.returncode}")
        if died is not None and inflight.is_file():  # the input it was running
            path = _keep_input(name, died[0], inflight.read_bytes(), died[1])
            kept.append(str(path.relative_to(REPO)))
            print(f"  {name}: {died[0]} kept as {kept[-1]}", file=sys.stderr)
        log_path.write_text("")  # one run's log at a time
        restarts += 1
    return {"inputs": done, "crashes": crashes + ooms, "unclear_errors": unclear,
            "hangs": hangs, "out_of_memory": ooms, "max_rss_mb": round(rss_mb, 1),
            "max_input_s": round(max_input_s, 3), "seconds": round(time.perf_counter() - t0, 1),
            "engine": engine, "crash_examples": examples[:10], "kept_inputs": kept[:20]}


def _progress(name: str, stats_path: Path, done: int, inputs: int, t0: float) -> None:
    try:
        n = done + json.loads(stats_path.read_text()).get("inputs", 0)
    except (OSError, ValueError):
        n = done
    rate = n / max(time.perf_counter() - t0, 1e-9)
    sys.stderr.write(f"  {name}: {n:>7}/{inputs} inputs  {rate:7.0f}/s\n")
    sys.stderr.flush()


def _api_campaign(args: argparse.Namespace) -> dict:
    from tests.fuzz.api import fuzz_openapi, ground_service, schema_checks_excluded

    t0 = time.perf_counter()
    excluded = schema_checks_excluded()
    if args.api_url:
        headers = dict(h.split(":", 1) for h in args.api_header)
        headers = {k.strip(): v.strip() for k, v in headers.items()}
        result = fuzz_openapi(args.api_url, headers, max_examples=args.api_examples,
                              excluded_checks=excluded, verify=args.api_ca_file or True)
        result["service"] = args.api_url
    else:
        with ground_service() as (url, headers, ca_file, pinned):
            result = fuzz_openapi(url, headers, max_examples=args.api_examples, verify=ca_file,
                                  excluded_checks=excluded, path_parameters=pinned)
        result["service"] = ("terrafix.ground.server (ground service: upload, operator and "
                             "provider routes; uvicorn, TLS, loopback, SQLite)")
    result["checks_excluded"] = [c.__name__ for c in excluded]
    result["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _takeoff_load(runs: int) -> dict:
    """Median take-off load with the full verification on the demo cache (module docstring)."""
    import socket

    import tomli_w

    from terrafix.app.live_demo import DATA_ROOT, _cli, ensure_cache, fly_config

    dataset = DATA_ROOT / "ds-demo-seed1"
    cache, signer = ensure_cache(dataset, "fuzz-takeoff")
    times, verify_s = [], []
    for i in range(runs):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out = WORK / f"takeoff-{i}-{time.time_ns()}"
        cfg = fly_config(dataset, cache, port, out, f"takeoff-{i}-{time.time_ns()}",
                         signer_fingerprint=signer)
        cfg_path = out / "fly.toml"
        out.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(tomli_w.dumps(cfg))
        code = (
            "import json, sys, time\n"
            "from terrafix.app.preflight import verify_flight_cache\n"
            "from terrafix.app.fly import FlyConfig, OnboardProgram\n"
            f"cfg = FlyConfig.load({str(cfg_path)!r})\n"
            "t = time.perf_counter()\n"
            "verify_flight_cache(cfg.map.cache, pinned=cfg.map.signer_fingerprint,"
            " vps=cfg.navigation.vps).close()\n"
            "v = time.perf_counter() - t\n"
            "p = OnboardProgram(cfg)\n"
            "load = p.takeoff()\n"
            "print(json.dumps({'load_s': load, 'verify_s': v}))\n"
            "import os; os._exit(0)\n")
        fc = subprocess.Popen(_cli("sim-fc", "--dataset", str(dataset), "--connect",
                                   f"udpin:127.0.0.1:{port}", "--out", str(out / "fc")),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  cwd=REPO, timeout=300,
                                  env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        finally:
            fc.kill()
            fc.wait()
        if done.returncode != 0:
            raise RuntimeError(f"take-off run failed: {done.stderr[-2000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        times.append(r["load_s"])
        verify_s.append(r["verify_s"])
    return {"takeoff_load_s": round(statistics.median(times), 3),
            "takeoff_load_runs_s": [round(x, 3) for x in times],
            "manifest_verification_s": round(statistics.median(verify_s), 3), "cache": str(cache)}


def _finalize_running(timeout_s: float) -> None:
    """Stop every running campaign of this checkout and keep what its workers have done: the
    worker's own counts (saved every 2 s), its peak RSS (VmHWM) read before it is stopped,
    `stopped_early` set. For a deadline on a machine too loaded to finish the inputs."""
    for pid_s in sorted(os.listdir("/proc")):
        if not pid_s.isdigit():
            continue
        try:
            args = Path(f"/proc/{pid_s}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid_s}/status").read_text()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in args if a]
        if not any(a.endswith("bench/fuzz.py") for a in argv) or "--worker" not in argv:
            continue
        name = argv[argv.index("--worker") + 1]
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        ppid = int(fields["PPid"].strip())
        rss_mb = int(fields.get("VmHWM", "0 kB").split()[0]) / 1024.0
        os.kill(ppid, signal.SIGKILL)  # the parent would restart the worker
        os.kill(int(pid_s), signal.SIGTERM)
        time.sleep(0.5)
        stats = json.loads((WORK / f"{name}.stats.json").read_text())
        result = {"inputs": stats["inputs"], "crashes": stats["crashes"],
                  "unclear_errors": stats["unclear_errors"],
                  "hangs": int(stats["max_input_s"] >= timeout_s), "out_of_memory": 0,
                  "max_rss_mb": round(rss_mb, 1), "max_input_s": round(stats["max_input_s"], 3),
                  "engine": stats["engine"], "crash_examples": stats["crash_examples"][:10],
                  "byte_level": name not in FILE_IMPORT_TARGETS, "stopped_early": True,
                  "command": " ".join(argv)}
        _save_result(name, result)
        print(f"stopped {name}: {result['inputs']} inputs, {result['crashes']} crashes")


def _save_result(name: str, result: dict) -> None:
    (WORK / f"{name}.result.json").write_text(json.dumps(result, indent=1) + "\n")


def _update_takeoff(args: argparse.Namespace) -> None:
    """Measure the take-off load and add it to the results file (which must exist)."""
    doc = json.loads(args.out.read_text())
    try:
        doc.update(_takeoff_load(args.takeoff_runs))
        doc.pop("takeoff_error", None)
    except Exception as exc:  # keep the fuzz results; say why the take-off was not measured
        doc["takeoff_error"] = f"{type(exc).__name__}: {exc}"[:2000]
    doc["takeoff_command"] = " ".join([Path(sys.executable).name, *sys.argv])
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"takeoff_load_s {doc.get('takeoff_load_s')} {doc.get('takeoff_error', '')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--targets", default="")
    ap.add_argument("--file-import-seconds", type=float, default=480.0)
    ap.add_argument("--timeout-s", type=float, default=10.0)
    ap.add_argument("--rss-limit-mb", type=int, default=2048)
    ap.add_argument("--max-restarts", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutate", action="store_true", help="random mutation, not atheris")
    ap.add_argument("--api-url", default="")
    ap.add_argument("--api-header", action="append", default=[])
    ap.add_argument("--api-ca-file", default="", help="CA of --api-url's TLS certificate")
    ap.add_argument("--api-examples", type=int, default=300)
    ap.add_argument("--takeoff-runs", type=int, default=3)
    ap.add_argument("--skip-takeoff", action="store_true")
    ap.add_argument("--merge", action="store_true",
                    help="write the results of every target run so far (build/fuzz/*.result."
                         "json, e.g. from campaigns run in parallel with --targets)")
    ap.add_argument("--finalize-running", action="store_true",
                    help="stop the running campaigns, keeping their workers' counts so far")
    ap.add_argument("--only-takeoff", action="store_true",
                    help="measure the take-off load into the existing results file")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--reproduce", nargs=2, metavar=("TARGET", "FILE"),
                    help="run one kept input (build/fuzz/crashes|hangs/...) through its target")
    ap.add_argument("--worker", default="")
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--stats", default="")
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    if args.reproduce:
        sys.exit(_reproduce(args.reproduce[0], Path(args.reproduce[1]), args.timeout_s))
    if args.finalize_running:
        _finalize_running(args.timeout_s)
        return
    if args.only_takeoff:
        _update_takeoff(args)
        return
    from tests.fuzz.targets import all_targets

    WORK.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.targets.split(",") if n]
    wanted = [t for t in all_targets() if (not names and not args.merge) or t.name in names]
    started = time.time()
    load_start = os.getloadavg()
    results: dict[str, dict] = {}
    for t in wanted:
        file_import = t.name in FILE_IMPORT_TARGETS
        print(f"fuzzing {t.name} ({'time budget' if file_import else f'{args.inputs} inputs'})",
              file=sys.stderr)
        r = _run_target(t.name, 10**9 if file_import else args.inputs, args,
                        args.file_import_seconds if file_import else None)
        r["byte_level"] = not file_import
        r["command"] = " ".join([Path(sys.executable).name, *sys.argv])
        results[t.name] = r
        _save_result(t.name, r)
    if (not names and not args.merge) or "openapi" in names:
        print("fuzzing the HTTP API with Schemathesis", file=sys.stderr)
        results["http_api_schemathesis"] = {**_api_campaign(args), "byte_level": False}
        _save_result("http_api_schemathesis", results["http_api_schemathesis"])
    if args.merge:  # every target's latest result, from this and parallel campaigns
        results = {p.name.removesuffix(".result.json"): json.loads(p.read_text())
                   for p in sorted(WORK.glob("*.result.json"))}
    byte_inputs = [r["inputs"] for r in results.values() if r.get("byte_level")]
    doc = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "host": platform.node(), "cpus": os.cpu_count(),
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "targets": results,
        "crashes_total": sum(r["crashes"] for r in results.values()),
        "hangs_total": sum(r["hangs"] for r in results.values()),
        "byte_parser_inputs_min": min(byte_inputs) if byte_inputs else 0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    if not args.skip_takeoff:
        _update_takeoff(args)
        doc = json.loads(args.out.read_text())
    print(f"\n{'target':<30} {'inputs':>9} {'crashes':>8} {'hangs':>6} {'rss MB':>8} {'s':>7}")
    for name, r in results.items():
        print(f"{name:<30} {r['inputs']:>9} {r['crashes']:>8} {r['hangs']:>6} "
              f"{r.get('max_rss_mb', 0):>8.0f} {r.get('seconds', 0):>7.0f}")
    print(f"crashes_total {doc['crashes_total']}  hangs_total {doc['hangs_total']}  "
          f"byte_parser_inputs_min {doc['byte_parser_inputs_min']}  "
          f"takeoff_load_s {doc.get('takeoff_load_s')}  -> {args.out}")


if __name__ == "__main__":
    main()
