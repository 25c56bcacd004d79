import sys

from rlhfsim.cli import main

sys.exit(main())
