"""One ArduPlane SITL process, started inside a private network namespace in a temp folder.

Why a namespace: SITL listens on every interface (TCP 5760.. for its serial ports) and has no
option to bind loopback only. `run_in_private_netns` re-executes a command under `unshare -n`
with only a loopback interface up, so SITL and the clients talking to it see each other and
nothing else can reach them. `ArduPlaneSitl` refuses to start outside such a namespace.

Ports (instance 0): TCP 5760 = SERIAL0 (SITL waits for a client there before it boots; it is
MAVLINK_COMM_0, the channel ArduPilot always accepts unsigned: our ground-station side),
5762 = SERIAL1 (terrafix's signed link), 5763 = SERIAL2.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ARDUPLANE_ENV = "TERRAFIX_ARDUPLANE"
"""Names the arduplane SITL binary (e.g. /work/sitl/out/bin/arduplane, scripts/build_sitl.sh)."""
PLANE_DEFAULTS_ENV = "TERRAFIX_ARDUPLANE_DEFAULTS"
"""Optional: the plane defaults file; else plane.parm beside the binary, else
the source tree's Tools/autotest/models/plane.parm."""
NETNS_ENV = "TERRAFIX_PRIVATE_NETNS"
SERIAL0_PORT = 5760
SERIAL1_PORT = 5762
REPO_PARM = Path(__file__).resolve().parents[3] / "docs" / "ardupilot" / "terrafix.parm"


class SitlError(RuntimeError):
    """SITL cannot be found, started or reached; the message says what to do."""


def arduplane_binary() -> Path:
    """The binary named by TERRAFIX_ARDUPLANE, or SitlError explaining how to get one."""
    value = os.environ.get(ARDUPLANE_ENV, "")
    if not value:
        raise SitlError(f"{ARDUPLANE_ENV} is not set: build ArduPlane SITL (see "
                        "../shared/tools/ardupilot-sitl.md) and set it to the arduplane binary")
    path = Path(value)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SitlError(f"{ARDUPLANE_ENV}={value} is not an executable file")
    return path


def plane_defaults(binary: Path) -> Path:
    """TERRAFIX_ARDUPLANE_DEFAULTS, else plane.parm beside the binary (where
    scripts/build_sitl.sh installs it), else the source tree's Tools/autotest/models/plane.parm
    (the binary left in build/sitl/bin)."""
    value = os.environ.get(PLANE_DEFAULTS_ENV)
    beside = binary.resolve().parent / "plane.parm"
    if value:
        path = Path(value)
    elif beside.is_file():
        path = beside
    else:
        path = binary.resolve().parents[3] / "Tools" / "autotest" / "models" / "plane.parm"
    if not path.is_file():
        raise SitlError(f"plane defaults {path} not found (set {PLANE_DEFAULTS_ENV})")
    return path


def _listening(port: int) -> bool:
    """A TCP socket of this namespace listens on `port` (from /proc/net/tcp, state 0A)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 3 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def in_private_netns() -> bool:
    """True when the only network interface is loopback (as under `unshare -n`)."""
    names = {name for _, name in socket.if_nameindex()}
    return names <= {"lo"}


def run_in_private_netns(argv: Sequence[str], *, env: dict[str, str] | None = None,
                         timeout_s: float | None = None) -> int:
    """Run argv under `unshare -n` with loopback up; returns its exit code."""
    if shutil.which("unshare") is None:
        raise SitlError("unshare (util-linux) is needed to run SITL in a private network "
                        "namespace")
    full_env = dict(os.environ if env is None else env)
    full_env[NETNS_ENV] = "1"
    cmd = ["unshare", "-n", "bash", "-c", 'ip link set lo up && exec "$@"', "bash", *argv]
    return subprocess.run(cmd, env=full_env, timeout=timeout_s, check=False).returncode


@dataclass
class ArduPlaneSitl:
    """ArduPlane SITL at `home` (lat, lon, alt AMSL m, heading deg) with plane.parm, the
    shipped terrafix.parm and `params` (written to a third defaults file) as defaults.

    Use as a context manager; `folder` is a fresh temp folder removed on exit (unless
    keep_folder)."""

    home: tuple[float, float, float, float]
    params: dict[str, float] = field(default_factory=dict)
    parm_files: tuple[Path, ...] = (REPO_PARM,)
    speedup: float = 1.0
    keep_folder: bool = False
    binary: Path | None = None
    folder: Path | None = None
    _proc: subprocess.Popen | None = None

    def start(self) -> ArduPlaneSitl:
        if not in_private_netns():
            raise SitlError("refusing to start SITL outside a private network namespace "
                            "(it listens on every interface): run under run_in_private_netns")
        binary = self.binary or arduplane_binary()
        self.folder = Path(tempfile.mkdtemp(prefix="terrafix-sitl-"))
        extra = self.folder / "run.parm"
        extra.write_text("".join(f"{k} {v:g}\n" for k, v in self.params.items()))
        defaults = [plane_defaults(binary), *self.parm_files, extra]
        lat, lon, alt, hdg = self.home
        cmd = [str(binary), "--model", "plane", "--speedup", f"{self.speedup:g}", "-I0",
               "--defaults", ",".join(str(p) for p in defaults),
               "--home", f"{lat:.8f},{lon:.8f},{alt:.2f},{hdg:.1f}"]
        self._log = open(self.folder / "arduplane.log", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, cwd=self.folder, stdout=self._log,
                                      stderr=subprocess.STDOUT)
        self._wait_port(SERIAL0_PORT, 30.0)
        return self

    def _wait_port(self, port: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise SitlError(f"arduplane exited with {self._proc.returncode}: see "
                                f"{self.folder}/arduplane.log")
            if _listening(port):  # no probe connection: SITL takes its first client as SERIAL0
                return
            time.sleep(0.2)
        raise SitlError(f"SITL did not listen on tcp {port} within {timeout_s:.0f} s")

    def log_text(self) -> str:
        if self.folder is None:
            return ""
        p = self.folder / "arduplane.log"
        return p.read_text(errors="replace") if p.is_file() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5.0)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self.folder is not None and not self.keep_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ArduPlaneSitl:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
