"""Who may talk to the DICOM port, through dcmtk against the running service (ADR 0307): in strict mode
an unlisted AE is refused, a listed AE calling from another host is refused, a store-only AE cannot
query; the settings refuse an open port in production; the listener binds loopback by default."""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom
import pytest
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parent))
from imaging_helpers import indexed, run_tool, wait_for

from hospital.imaging.config import ImagingSettings
from hospital.testing.waits import equals as _eq

PATIENT_ID = "BN-2025-000123"


async def _find(port: int, out: Path, aet: str) -> tuple[int, str, list[pydicom.Dataset]]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    res = await run_tool(
        "findscu",
        "-S",
        "-aet",
        aet,
        "-aec",
        "HOSPITAL_PACS",
        "-X",
        "-od",
        out,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"PatientID={PATIENT_ID}",
        "-k",
        "PatientName",
        "-k",
        "StudyInstanceUID",
        "127.0.0.1",
        port,
    )
    return res.returncode, res.stderr, [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


async def test_strict_mode_checks_ae_host_and_permissions(
    imaging_factory, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=2, size=16)
    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    known = "CT_HUE=127.0.0.1:4006,VIEWER=127.0.0.1:4007,REMOTE_WS=127.0.0.2:4008"
    async with imaging_factory(
        strict_ae=True, known_aes=known, ae_permissions="CT_HUE=store+worklist"
    ) as svc:
        port = svc.settings.dicom_port
        stored = await run_tool(
            "storescu", "-aet", "CT_HUE", "-aec", "HOSPITAL_PACS", "+sd", "127.0.0.1", port, tmp_path / "ct"
        )
        assert stored.returncode == 0, stored.stderr
        await wait_for(lambda: _eq(indexed(svc, study_uid), 2))

        # A listed AE with query permission (no entry = every permission) from its own host: answered.
        code, err, found = await _find(port, tmp_path / "viewer", "VIEWER")
        assert code == 0, err
        assert [str(d.StudyInstanceUID) for d in found] == [study_uid]

        # Anybody else: the association is rejected, nothing is answered.
        code, err, found = await _find(port, tmp_path / "anybody", "ANYBODY")
        assert code != 0 and "Calling AE Title Not Recognized" in err, err
        assert found == []

        # A listed AE calling from a host it is not listed for.
        code, err, found = await _find(port, tmp_path / "remote", "REMOTE_WS")
        assert code != 0 and "Calling AE Title Not Recognized" in err, err
        assert found == []
        # ... also for storage (the lean receiver applies the same rule).
        moved = await run_tool(
            "storescu", "-aet", "REMOTE_WS", "-aec", "HOSPITAL_PACS", "127.0.0.1", port, files[0]
        )
        assert moved.returncode != 0 and "Calling AE Title Not Recognized" in moved.stderr, moved.stderr

        # The modality may store, not query: its C-FIND context is refused.
        code, err, found = await _find(port, tmp_path / "modality", "CT_HUE")
        assert code != 0 and "No Acceptable Presentation Contexts" in err, err
        assert found == []


async def test_store_permission_is_enforced_by_the_receivers(
    imaging_factory, make_ct_series, tmp_path: Path
) -> None:
    files = make_ct_series(tmp_path / "ct", count=1, size=16)
    async with imaging_factory(
        strict_ae=True, known_aes="VIEWER=127.0.0.1:4007", ae_permissions="VIEWER=query+retrieve"
    ) as svc:
        res = await run_tool(
            "storescu",
            "-aet",
            "VIEWER",
            "-aec",
            "HOSPITAL_PACS",
            "127.0.0.1",
            svc.settings.dicom_port,
            files[0],
        )
        assert res.returncode != 0 and "No Acceptable Presentation Contexts" in res.stderr, res.stderr
        assert list(svc.settings.spool_path.rglob("*.dcm")) == []
        echo = await run_tool(
            "echoscu", "-aet", "VIEWER", "-aec", "HOSPITAL_PACS", "127.0.0.1", svc.settings.dicom_port
        )
        assert echo.returncode == 0, echo.stderr


def _production(tmp_path: Path, **overrides: object) -> ImagingSettings:
    key = tmp_path / "issuer.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
    base: dict[str, object] = {
        "environment": "production",
        "auth_dev_issuer": False,
        "auth_public_key_file": key,
        "s3_secret_key": "Zq8v3-prod-s3-key-xx",
        "audit_key_file": tmp_path / "audit.key",
        "data_dir": tmp_path,
    }
    return ImagingSettings(**{**base, **overrides})


def test_production_refuses_an_open_dicom_port_without_an_override(tmp_path: Path) -> None:
    assert ImagingSettings(data_dir=tmp_path).dicom_host == "127.0.0.1"
    with pytest.raises(ValidationError, match="strict_ae must be true in production"):
        _production(tmp_path, strict_ae=False, dicom_host="10.0.5.2")
    with pytest.raises(ValidationError, match="listens on every interface"):
        _production(tmp_path, strict_ae=True, dicom_host="0.0.0.0")
    assert _production(tmp_path, strict_ae=True, dicom_host="10.0.5.2").strict_ae
    assert (
        _production(
            tmp_path,
            strict_ae=False,
            dicom_allow_any_calling_ae=True,
            dicom_host="0.0.0.0",
            dicom_allow_wildcard_host=True,
        ).dicom_host
        == "0.0.0.0"
    )
    with pytest.raises(ValidationError, match="not in known_aes"):
        ImagingSettings(data_dir=tmp_path, known_aes="CT_HUE=10.0.0.2:104", ae_permissions="MR=store")
    with pytest.raises(ValidationError, match="unknown permission"):
        ImagingSettings(data_dir=tmp_path, known_aes="CT_HUE=10.0.0.2:104", ae_permissions="CT_HUE=delete")
