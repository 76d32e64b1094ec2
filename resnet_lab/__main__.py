"""`python -m resnet_lab`: see `resnet_lab.cli`."""

import sys

from resnet_lab.cli import main

sys.exit(main())
