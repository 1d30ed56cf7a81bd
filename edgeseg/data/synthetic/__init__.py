"""Procedural street scenes in the Cityscapes layout, for tests, demos and smoke training.

A scene is built in 3-D and painted far to near through a pinhole camera at a random height,
horizon and focal length: sky gradient and clouds, a far skyline or tree line, ground (terrain,
road with lane marks and crossings, kerbed sidewalks), building facades with windows along both
sides (or parks and gardens behind hedges, fences and walls), then trees, poles with signs and
traffic lights, pedestrians, parked bicycles and the traffic (cars, buses, trucks, a tram on its
rails, motorcyclists and cyclists) sorted by depth so that nearer things occlude farther ones;
vehicles on the road never overlap. Every instance
has its own colour drawn from overlapping distributions (grey cars on grey roads under grey
facades), classes get their own texture statistics, and a global exposure / white balance /
gamma change, cast shadows and sensor noise finish the frame: a network has to learn shape,
position and context rather than one colour per class.

Labels are Cityscapes *label ids* (7 road, 8 sidewalk, 11 building, 12 wall, 13 fence, 17 pole,
19 traffic light, 20 traffic sign, 21 vegetation, 22 terrain, 23 sky, 24 person, 25 rider,
26 car, 27 truck, 28 bus, 31 train (the tram), 32 motorcycle, 33 bicycle; 1 ego vehicle for the
occasional bonnet at the bottom, which training ignores; tram rails in the road are road, as in
Cityscapes). All nineteen train classes appear in the default 24-image val split at 128x256
(tests/test_data.py); the two-wheelers and riders are small there, as they are in Cityscapes.
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
