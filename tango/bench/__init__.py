"""`tango bench`: your tiers and their cascade, measured on your labelled rows.

Every system scores the same rows end to end (tokenization and routing included) with the same
threads, and the systems are timed interleaved: one warm-up round, then ``repeats`` rounds that
each run every system once, the start rotating by one per round, so a slow spell of the machine
falls on all systems alike. Each row of the result gives the median seconds and the min-max.

The rooms: :mod:`~tango.bench.timing` (the one timing helper), :mod:`~tango.bench.rows` (which
rows score and which choose the gate), :mod:`~tango.bench.systems` (what is timed),
:mod:`~tango.bench.results` (the numbers from the timings), :mod:`~tango.bench.run` (the run:
:func:`bench`) and :mod:`~tango.bench.report` (results.json, .md, .png, report.html).
"""

from tango.bench.results import escalation_curve
from tango.bench.run import HELD_OUT, BenchSettings, bench
from tango.bench.timing import Timing, interleave

__all__ = ["HELD_OUT", "BenchSettings", "Timing", "bench", "escalation_curve", "interleave"]
