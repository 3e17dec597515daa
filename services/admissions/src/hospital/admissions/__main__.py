"""python -m hospital.admissions serve|worker|migrate|deadletters|audit-verify"""

import sys

from hospital.admissions.service import DEFINITION
from hospital.chassis.app import main

if __name__ == "__main__":
    sys.exit(main(DEFINITION))
