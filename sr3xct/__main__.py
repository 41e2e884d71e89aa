"`python -m sr3xct ...`: the `sr3xct` command line."
import sys
from sr3xct.cli import main

if __name__ == '__main__': sys.exit(main())
