# A notebook's cells, run top to bottom as a script by test_notebook.py: each `_repr_html_()`
# is what Jupyter shows for the object a cell ends with. Arguments: REF DEV CONFIG OUT_DIR.
import sys
from pathlib import Path

import driftscope

ref, dev, config, out = sys.argv[1:5]

# %% compare: Jupyter shows the summary table and the drift chart
c = driftscope.compare(ref, dev)
Path(out, "compare.html").write_text(c._repr_html_())

# %% the pairs as a DataFrame
df = c.to_pandas()
print(df[["name", "cosine", "rel_l2_err", "verdict"]].head())

# %% check: pass or fail, with what failed
r = driftscope.check(ref, dev, config=config)
Path(out, "check.html").write_text(r._repr_html_())
print(repr(c))
print(repr(r))
