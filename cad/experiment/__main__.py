import os
import sys

# --no-progress silences every bar, also those of helpers that take no progress argument (the classifiers' training):
# tqdm reads TQDM_DISABLE once, when it is imported, so it is set before cad imports it.
if "--no-progress" in sys.argv[1:]:
    os.environ["TQDM_DISABLE"] = "1"

from cad.experiment.cli import main  # noqa: E402

sys.exit(main())
