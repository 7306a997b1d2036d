"""terrafix.recorder: the flight data recorder (REQUIREMENTS R1-R5).

Public API (everything else is internal):

    rec = FlightRecorder(folder, flight_id=..., config_hash=..., key_fingerprints={...},
                         on_disk_full=alert)                # one per flight
    imu = rec.producer("/fc/imu", IMU_SCHEMA)                # one per component/topic
    imu.record(t_ns, {"accel": a, "gyro": w})                # never blocks; raises only
                                                             # RecorderPolicyError (raw frames)
    rec.flush()                                              # True: all enqueued is on disk
    logging.getLogger().addHandler(rec.log_handler())        # WARNING+ into the log
    FailedMatchThumbnails(rec).offer(t_ns, jpeg)             # <= 0.1 Hz, rest counted
    TileSnapshots(rec, max_per_flight=500).offer(t_ns, "z/x/y", jpeg, sigma_m)
    footer = rec.close()                                     # counters + clean flag on disk
    clean_footer(folder) -> bool                             # post-flight upload gate
    FlightLog(folder).messages(topics)                       # read back, tolerant of damage
"""

from terrafix.recorder.errors import RecorderError, RecorderFormatError, RecorderPolicyError
from terrafix.recorder.flight import FlightFooter, FlightHeader, ProducerCounters
from terrafix.recorder.policies import FailedMatchThumbnails, TileSnapshots
from terrafix.recorder.producer import Producer
from terrafix.recorder.reader import (
    FlightLog,
    RecordedMessage,
    RecorderWarning,
    clean_footer,
    footer_problem,
)
from terrafix.recorder.writer import FlightRecorder, RecorderConfig

__all__ = [
    "FailedMatchThumbnails",
    "FlightFooter",
    "FlightHeader",
    "FlightLog",
    "FlightRecorder",
    "Producer",
    "ProducerCounters",
    "RecordedMessage",
    "RecorderConfig",
    "RecorderError",
    "RecorderFormatError",
    "RecorderPolicyError",
    "RecorderWarning",
    "TileSnapshots",
    "clean_footer",
    "footer_problem",
]
