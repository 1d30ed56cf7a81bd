"""Training: losses, the loop, checkpoints, configuration and evaluation.

``edgeseg.train(cfg)`` calls :func:`edgeseg.train.loop.train`.
"""

from edgeseg._callable import make_callable

make_callable(__name__, "edgeseg.train.loop:train")
