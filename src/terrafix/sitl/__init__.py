"""Real ArduPlane SITL in the loop: launching it safely, steering it as a ground station, and
flying terrafix's GNSS switch against it.

Nothing of ArduPilot lives in this repository: the binary is named by TERRAFIX_ARDUPLANE (how
to build it: ../shared/tools/ardupilot-sitl.md). SITL binds every interface, so it and its
clients always run inside a private network namespace (`unshare -n`), each run in a fresh
temporary folder.

- process.py: the binary, the private namespace, one SITL process.
- control.py: the ground-station side on SERIAL0 (parameters, mission, mode, arming) and the
  telemetry recorder (SIM_STATE truth, GLOBAL_POSITION_INT, EKF_STATUS_REPORT, STATUSTEXT).
- mission.py: the AUTO loop over the imagery and its MISSION_ITEM_INT upload.
- switch_run.py: a flight that spoofs, then jams SITL's GPS1 and measures ArduPilot through
  terrafix's switch (bench/sitl.py, tests/sitl).
"""
