"""Flight simulator: trajectories with ground truth, sensor models with GNSS attacks, a rendered
camera world (real orthophotos or a procedural one), scenarios and the flight-dataset format.

Everything downstream (vision, estimation, evaluation) is developed and measured on what this
package writes, so it must be deterministic from a seed and carry its own ground truth.
"""

from terrafix.sim.errors import ScenarioError, SimError, WorldError

__all__ = ["ScenarioError", "SimError", "WorldError"]
