"""``python -m melfront.cli``: the ``melfront`` command."""
import sys

from . import main

sys.exit(main())
