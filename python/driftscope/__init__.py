"""driftscope: find where a neural network's numbers drift between backends.

    import driftscope
    c = driftscope.compare("dumps/cpu_fp32", "dumps/npu_fp16")
    c.first_divergence, c.summary, c.pairs[0]["cosine"]
    b = driftscope.bisect("dumps/cpu_fp32", "dumps/npu_fp16", baseline="dumps/npu_fp16_good")
    r = driftscope.check("dumps/cpu_fp32", "dumps/npu_fp16", config="driftscope.toml")

The work runs in Rust with the GIL released. Results wrap the JSON report of
docs/report-schema.md. ``from driftscope import harness`` is the dump collector (needs torch);
the ``driftscope`` command is installed with the package. Guide: docs/python.md.
"""

from ._api import bisect, check, compare
from ._comparison import CheckResult, Comparison
from ._driftscope import __version__
from ._errors import DumpError, Error

__all__ = [
    "CheckResult",
    "Comparison",
    "DumpError",
    "Error",
    "__version__",
    "bisect",
    "check",
    "compare",
]
