"""Every stage of the pipeline; importing this package registers them.

One module per stage. Each module must import without optional dependencies
(import LAMMPS, tifffile... inside functions).
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
