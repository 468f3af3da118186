"""``python -m iwae_np.cli``: the ``iwae-np`` command without the console script."""
import sys

from . import main

sys.exit(main())
