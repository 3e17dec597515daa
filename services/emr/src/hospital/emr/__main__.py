"""python -m hospital.emr serve|worker|migrate|deadletters|audit-verify"""

import sys

from hospital.chassis.app import main
from hospital.emr.service import DEFINITION

if __name__ == "__main__":
    sys.exit(main(DEFINITION))
