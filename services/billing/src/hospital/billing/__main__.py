"""python -m hospital.billing serve|worker|migrate|deadletters|audit-verify"""

import sys

from hospital.billing.service import DEFINITION
from hospital.chassis.app import main

if __name__ == "__main__":
    sys.exit(main(DEFINITION))
