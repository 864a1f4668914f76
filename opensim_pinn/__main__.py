"""``python -m opensim_pinn``: the ``opensim-pinn`` command (what ``torchrun -m opensim_pinn`` runs)."""

import sys

from .cli import main

sys.exit(main())
