"""Commands of the onboard program and its simulated flight controller:
`terrafix fly --config FILE` and `terrafix sim-fc --dataset D --connect CONN`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fly_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="Onboard config (TOML).")],
) -> None:
    """Run the onboard program: take-off checks (verified cache, warm models, signed FC link),
    then navigate until the frames end or the FC reports the flight over."""
    from terrafix.app.fly import FlyConfig, FlyError, OnboardProgram

    try:
        summary = OnboardProgram(FlyConfig.load(config)).fly()
    except FlyError as exc:
        typer.echo(f"terrafix fly: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"flight {summary.flight_id}: {summary.solutions} solutions, "
               f"{summary.frames_processed}/{summary.frames_seen} frames, "
               f"latency p95 {summary.latency_p95_ms:.0f} ms")


def sim_fc_command(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Simulator dataset folder.")],
    connect: Annotated[str, typer.Option(
        "--connect", help="FC end of the link, e.g. udpin:127.0.0.1:14551 (companion "
                          "connects with udpout:) or a serial device.")] = "udpin:127.0.0.1:14551",
    speed: Annotated[float, typer.Option(help="Playback speed (1 = real time).")] = 1.0,
    out: Annotated[Path | None, typer.Option(help="Where the FC writes its GPS_INPUT log "
                                                  "(default DATASET/fc).")] = None,
    wait_s: Annotated[float, typer.Option(help="How long to wait for the companion.")] = 60.0,
) -> None:
    """Play a simulator dataset over MAVLink as an ArduPilot flight controller, in real time,
    and log every GPS_INPUT it accepted."""
    from terrafix.sim.flight_controller import run_simulated_fc

    s = run_simulated_fc(dataset, connect, speed=speed, out_dir=out, wait_for_companion_s=wait_s)
    typer.echo(f"GPS_INPUT: {s.gps_input_count} received, {s.gps_input_decoded} decoded, "
               f"{s.gps_input_rate_hz:.2f} Hz, max gap {s.gps_input_max_gap_ms:.0f} ms")


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "demo-output"),
    seed: Annotated[int, typer.Option("--seed", help="Simulation seed.")] = 1,
    backend: Annotated[str, typer.Option(help="Estimator backend: eskf or isam2.")] = "eskf",
    dataset: Annotated[Path | None, typer.Option(
        help="Fly this simulator dataset (real imagery) instead of the demo scenario.")
    ] = None,
) -> None:
    """The whole system on the real-imagery flight: simulate it, provision and sign the map,
    run the simulated FC and the onboard program as two processes over MAVLink in real time,
    write the evaluation report and the flight review page; then the map loop: the flight's
    tiles uploaded after landing to an embedded ground service, a second flight (seed + 1,
    another aircraft) likewise, and the vote that promotes what both saw."""
    from terrafix.app.demo import draw_overview
    from terrafix.app.live_demo import ensure_dataset, run_map_loop
    from terrafix.sim.dataset import load_dataset

    out.mkdir(parents=True, exist_ok=True)
    ds = dataset if dataset is not None else ensure_dataset(seed)
    overview = draw_overview(load_dataset(ds), out / "overview.png")
    # the demo flight and a second one (next seed, another aircraft) over the same ground;
    # with --dataset (a given, usually short, flight) that flight alone
    seeds = (seed,) if dataset is not None else (seed, seed + 1)
    loop = run_map_loop(out, seeds, backend, dataset=ds)
    for line in demo_summary_lines(loop["lives"][0], overview):
        typer.echo(line)
    for f in loop["flights"]:
        up = f["upload"] or {}
        typer.echo(f"upload {f['aircraft']} (seed {f['seed']}): "
                   + (f"{up.get('accepted', 0)} accepted, {up.get('duplicate', 0)} duplicate, "
                      f"{up.get('rejected', 0)} rejected of {up.get('offered', 0)} tiles"
                      if not up.get("error") else f"not done: {up['error']}"))
    v = loop["votes"]
    typer.echo(f"ground vote: {v['promoted']} promoted, {v['conflict']} in conflict, "
               f"{v['pending']} pending  ({out / 'map-loop.json'})")


def demo_summary_lines(live: dict, overview: Path) -> list[str]:
    """The demo's closing screen: headline figures, the verdicts, where the pages are."""
    from terrafix.eval.verdicts import verdict_lines

    lines = [f"live: p95 {live['p95_m']:.1f} m, max {live['max_m']:.1f} m, GPS_INPUT "
             f"{live['gps_input_rate_hz']:.2f} Hz (max gap {live['gps_input_max_gap_ms']:.0f}"
             f" ms), latency p95 {live['latency_p95_ms']:.0f} ms"]
    lines += [f"damaged log: {w}" for w in live.get("damage", [])]
    lines += verdict_lines(live.get("verdicts", []))
    lines += [f"overview: {overview}", f"report:   {live['report']}",
              f"review:   {live['review']}"]
    return lines


def sitl_demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Result JSON.")] = Path(
        "sitl-demo/result.json"),
    topology: Annotated[str, typer.Option(
        help="gps2_primary (shipped), only_gps or extnav.")] = "gps2_primary",
    death: Annotated[bool, typer.Option(help="End with the companion dying on terrafix.")
                     ] = True,
    navigation: Annotated[str, typer.Option(
        help="terrafix: the onboard program with its camera navigation (closed loop); "
             "stand-in: SITL's truth plus a correlated error.")] = "terrafix",
) -> None:
    """Fly real ArduPlane SITL (binary: TERRAFIX_ARDUPLANE) from the demo take-off point on an
    AUTO loop over the imagery; spoof, then jam SITL's GPS1; terrafix's gate switches
    ArduPilot onto terrafix (GPS2) and back. Runs in a private network namespace."""
    import json
    import sys

    from terrafix.sitl.process import SitlError, arduplane_binary, run_in_private_netns

    try:
        arduplane_binary()
    except SitlError as exc:
        typer.echo(f"terrafix sitl-demo: {exc}", err=True)
        raise typer.Exit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    if navigation not in ("terrafix", "stand-in"):
        typer.echo(f"terrafix sitl-demo: --navigation {navigation!r}: expected terrafix or "
                   "stand-in", err=True)
        raise typer.Exit(2)
    argv = [sys.executable, "-m", "terrafix.sitl.switch_run", "--topology", topology,
            "--navigation", navigation, "--out", str(out.resolve())] + (
                [] if death else ["--no-death"])
    rc = run_in_private_netns(argv)
    if rc != 0 or not out.is_file():
        typer.echo(f"terrafix sitl-demo: the SITL flight failed (exit {rc})", err=True)
        raise typer.Exit(1)
    r = json.loads(out.read_text())
    typer.echo(f"switch to terrafix {r['switch_to_terrafix_s']} s after the spoof started "
               f"(offset {r['spoof_offset_at_switch_m']} m); ArduPilot error p95 on terrafix "
               f"{r['ardupilot_error_p95_m']} m; EKF aiding lost {r['ekf_aiding_lost_s']} s; "
               f"mission completed {r['mission_completed']}")
    if "terrafix_error_p95_m" in r:
        typer.echo(f"terrafix's own error p95 {r['terrafix_error_p95_m']} m, truth inside its "
                   f"95% radius {r['terrafix_inside95_share']}; gate closed "
                   f"{r['gate_closed_after_spoof_s']} s after the spoof started (negative: "
                   f"before it); flight outputs in {r.get('flight_folder')}")
