"""The navigation core that the onboard program and the replay both drive.

- `navigator.Navigator`: time-ordered sensor samples in, `NavSolution`s, per-frame reports and
  integrity events out; no I/O of its own.
- `attitude.OdometryAttitude`: the attitude the odometry projects frames with (tilt from the FC,
  heading from the gyro and the images).
- `heading_calibration.OdometryHeadingCalibration`: the odometry's heading offset and scale
  from baselines between absolute references, with their correlated-error budget.
- `registration_runner`: registration against the map inline (replay) or on a worker thread
  (live).

The estimator backends and the integrity layer (`estimation.integrity.IntegrityMonitor`) it
sits on are in `terrafix.estimation`; the composition roots (fly, replay, demo) in
`terrafix.app`.
"""
