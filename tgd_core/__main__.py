import sys

from tgd_core.cli import main

sys.exit(main())
