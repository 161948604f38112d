import sys

from facesets.cli import main

sys.exit(main())
