"""Entry point: ``python -m chimera_surv.audit ...`` (see cli.py)."""

from __future__ import annotations

import sys

from chimera_surv.audit.cli import main

sys.exit(main())
