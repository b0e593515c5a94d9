"""Where portnn's time goes: the ``--profile`` table the step benchmarks print (bench_cnn, bench_rnn, bench_transformer)."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable


def print_profile(run: Callable[[], object], rows: int = 12) -> None:
    """Run ``run()`` under cProfile and print the top ``rows`` functions by their own time."""
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(rows)
    print("\nwhere portnn's time goes (cProfile, by own time):")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:4000])
