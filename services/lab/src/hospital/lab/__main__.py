"""python -m hospital.lab serve|worker|migrate|deadletters|audit-verify"""

import sys

from hospital.chassis.app import main
from hospital.lab.service import DEFINITION

if __name__ == "__main__":
    sys.exit(main(DEFINITION))
