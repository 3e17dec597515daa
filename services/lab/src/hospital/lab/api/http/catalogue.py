"""The test catalogue: tests with their reference ranges, and panels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from hospital.lab.api.http import schemas as sc
from hospital.lab.api.http.deps import Reader, Svc

router = APIRouter(prefix="/api/v1", tags=["catalogue"])


@router.get("/catalogue", response_model=sc.CatalogueOut)
async def catalogue(svc: Svc, _: Reader) -> dict[str, Any]:
    await svc.ingest.ensure_catalogue()
    cat = svc.catalogue
    return {
        "tests": [
            {
                "code": t.code,
                "name_vi": t.name_vi,
                "name_en": t.name_en,
                "loinc": t.loinc,
                "unit": t.unit,
                "specimen_type": t.specimen_type,
                "tube": t.tube,
                "ranges": [
                    {
                        "sex": x.sex,
                        "age_min_days": x.age_min_days,
                        "age_max_days": x.age_max_days,
                        "range": x.text(),
                    }
                    for x in t.ranges
                ],
            }
            for t in sorted(cat.tests.values(), key=lambda t: t.sort)
        ],
        "panels": [{"code": c, "name_vi": cat.panel_names[c], "tests": m} for c, m in cat.panels.items()],
    }
