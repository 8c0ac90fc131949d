import sys

from cad.experiment.cli import main

sys.exit(main())
