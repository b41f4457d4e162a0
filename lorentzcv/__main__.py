"""``python -m lorentzcv`` (also what ``torchrun -m lorentzcv train ...`` runs): the ``lorentzcv`` CLI."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
