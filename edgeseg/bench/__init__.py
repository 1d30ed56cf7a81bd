"""Measurement: timing, power, memory, CIO and roofline.

``edgeseg.bench(...)`` calls :func:`edgeseg.bench.report.run_bench`.
"""

from edgeseg._callable import make_callable

make_callable(__name__, "edgeseg.bench.report:run_bench")
