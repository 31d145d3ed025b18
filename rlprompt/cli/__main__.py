"""``python -m rlprompt.cli ...``: the same as ``rlprompt ...``."""

import sys

from rlprompt.cli.main import main

sys.exit(main())
