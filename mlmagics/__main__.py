import sys

from mlmagics.cli import main

sys.exit(main())
