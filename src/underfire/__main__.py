import sys

from underfire.cli import main

sys.exit(main())
