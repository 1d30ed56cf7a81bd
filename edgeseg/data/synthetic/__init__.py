"""Procedural street scenes in the Cityscapes layout, for tests, demos and smoke training.

A scene is built in 3-D and painted far to near through a pinhole camera at a random height,
horizon and focal length: sky gradient and clouds, a far skyline or tree line, ground (terrain,
road with lane marks and crossings, kerbed sidewalks), building facades with windows along both
sides (or parks with hedges and fences), then trees, poles with signs and traffic lights,
pedestrians and cars sorted by depth so that nearer things occlude farther ones. Every instance
has its own colour drawn from overlapping distributions (grey cars on grey roads under grey
facades), classes get their own texture statistics, and a global exposure / white balance /
gamma change, cast shadows and sensor noise finish the frame: a network has to learn shape,
position and context rather than one colour per class.

Labels are Cityscapes *label ids* (7 road, 8 sidewalk, 11 building, 13 fence, 17 pole,
19 traffic light, 20 traffic sign, 21 vegetation, 22 terrain, 23 sky, 24 person, 26 car;
1 ego vehicle for the occasional bonnet at the bottom, which training ignores). Twelve of the
nineteen train classes appear; all of them are large enough to learn at 128x256.

About 10-15 ms of CPU per 256x512 scene (cv2 drawing, vectorised numpy noise).
"""

from __future__ import annotations

from edgeseg.data.synthetic.scene import generate_scene, scene_rng
from edgeseg.data.synthetic.writer import MARKER, SYNTH_CITIES, write_synthetic_cityscapes

__all__ = [
    "MARKER",
    "SYNTH_CITIES",
    "generate_scene",
    "scene_rng",
    "write_synthetic_cityscapes",
]
