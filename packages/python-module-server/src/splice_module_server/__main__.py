"""``python -m splice_module_server``: see main.py."""

import os
import sys

# `python -m` puts the current folder first on sys.path: a stray numpy.py there would shadow the
# module served. The module is found on sys.path as installed, or in MODULE_RESOLVE_FROM.
if sys.path and not getattr(sys.flags, "safe_path", False) and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from splice_module_server.main import main

if __name__ == "__main__":
    main()
