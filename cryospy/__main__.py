import sys

from cryospy.cli.main import main

sys.exit(main())
