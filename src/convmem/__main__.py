import sys

from convmem.cli import main

sys.exit(main())
