"""python -m hospital.web serve|worker|migrate|deadletters|audit-verify, and
``python -m hospital.web demo-users`` (the local stack: one user per role, password from
HOSPITAL_WEB_DEMO_PASSWORD)."""

import sys

from hospital.chassis.app import main
from hospital.web.service import DEFINITION

if __name__ == "__main__":
    if sys.argv[1:2] == ["demo-users"]:
        from hospital.web.app.demo import main as demo_main

        sys.exit(demo_main())
    sys.exit(main(DEFINITION))
