"""`edgeseg tune`: the fastest configuration that meets a frame-rate and accuracy target on
this device, written as a profile.

Outline: the search space (:mod:`.space`: size ladder, precision, deformable-conv form,
onnxruntime threads; TensorRT and torch options as configuration entries) is pruned on the
roofline FPS ceiling (:mod:`.prune`), the rest measured most promising first with the bench
machinery and scored against the FP32 full-resolution reference (:mod:`.measure`), each
result appended to a resumable record (:mod:`.record`); the Pareto front and its plot
(:mod:`.pareto`) and the pick, written as a profile (:mod:`.tune`), finish it.

``edgeseg.tune(...)`` calls :func:`edgeseg.tune.tune.tune`.
"""

from edgeseg._callable import make_callable

make_callable(__name__, "edgeseg.tune.tune:tune")
