"""``python -m attngan_jax.parity [DIR]``."""

import sys

from attngan_jax.parity import main

sys.exit(main())
